"""The file sink's JSONL and CSV timelines."""

import csv
import json
from pathlib import Path

from pipeline.core.types import Face, FrameResult
from pipeline.sinks.files import FileSink

NAMES = ["angry", "happy", "neutral"]


def _face(emotion: str, score: float) -> Face:
    scores = {name: 0.01 for name in NAMES} | {emotion: score}
    return Face(box=(10.0, 20.0, 50.5, 70.25), emotion=emotion, score=score, scores=scores)


def test_jsonl_has_every_frame_and_csv_one_row_per_face(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "out", NAMES, "m-1")
    sink.write([
        FrameResult("cam", 0, 0.0, 1700000000.0, 640, 360, [_face("happy", 0.9), _face("angry", 0.6)]),
        FrameResult("cam", 1, 0.04, 1700000000.04, 640, 360, []),
    ])
    sink.write([FrameResult("cam", 2, 0.08, 1700000000.08, 640, 360, [_face("neutral", 0.7)])])
    sink.close()
    frames = [json.loads(line) for line in sink.jsonl_path.read_text().splitlines()]
    assert [f["frame"] for f in frames] == [0, 1, 2]
    assert frames[1]["faces"] == []
    assert frames[0]["faces"][0] == {
        "id": None,
        "box": [10.0, 20.0, 50.5, 70.2],
        "emotion": "happy",
        "score": 0.9,
        "scores": {"angry": 0.01, "happy": 0.9, "neutral": 0.01},
    }
    rows = list(csv.DictReader(sink.csv_path.open()))
    assert len(rows) == 3
    assert rows[1]["emotion"] == "angry" and rows[1]["face"] == "1" and float(rows[1]["p_angry"]) == 0.6
    assert rows[2]["frame"] == "2" and rows[2]["pts"] == "0.08"
    assert list(rows[0])[-3:] == ["p_angry", "p_happy", "p_neutral"]


def test_batches_are_on_disk_before_close(tmp_path: Path) -> None:
    sink = FileSink(tmp_path, NAMES, "m-1")
    sink.write([FrameResult("cam", 0, 0.0, 1.0, 64, 64, [_face("happy", 0.8)])])
    assert len(sink.jsonl_path.read_text().splitlines()) == 1
    assert len(sink.csv_path.read_text().splitlines()) == 2
    sink.close()
