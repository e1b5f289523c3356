"""The file sink's JSONL and CSV timelines."""

import csv
import json
from pathlib import Path

import numpy as np

from pipeline.engine.batch import Detections, FrameInfo
from pipeline.sinks.files import FileSink
from pipeline.sinks.payload import FramePayload, frame_payloads

NAMES = ["angry", "happy", "neutral"]


def _face(emotion: str, score: float) -> list[float]:
    scores = [score if name == emotion else 0.01 for name in NAMES]
    return [10.0, 20.0, 50.5, 70.25, score, NAMES.index(emotion), *scores]


def _payloads(frames: list[tuple[int, float, list[list[float]]]]) -> list[FramePayload]:
    """(index, pts, faces) per frame -> the payloads the sinks receive."""
    infos = [FrameInfo("cam", index, pts, 1700000000.0 + pts, 640, 360) for index, pts, _faces in frames]
    rows = np.array([face for _i, _p, faces in frames for face in faces], np.float32).reshape(-1, 6 + len(NAMES))
    counts = np.array([len(faces) for _i, _p, faces in frames], np.int64)
    return frame_payloads(Detections.from_rows(infos, counts, rows, len(NAMES)), NAMES)


def test_jsonl_has_every_frame_and_csv_one_row_per_face(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "out", NAMES, "m-1")
    sink.write(_payloads([(0, 0.0, [_face("happy", 0.9), _face("angry", 0.6)]), (1, 0.04, [])]))
    sink.write(_payloads([(2, 0.08, [_face("neutral", 0.7)])]))
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
    sink.write(_payloads([(0, 0.0, [_face("happy", 0.8)])]))
    assert len(sink.jsonl_path.read_text().splitlines()) == 1
    assert len(sink.csv_path.read_text().splitlines()) == 2
    sink.close()
