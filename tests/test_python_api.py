"""The Python API at the top of `pipeline`: analyze_video, read_timeline, EmotionDetector, Detections.to_supervision.

Real parts only: H.264 files rendered by training.synthetic_video, the shipped demo model, a real
redis-server; and the example of docs/python-api.md, run as it is written.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import redis

import pipeline
from pipeline.core.errors import ConfigError, SinkError
from pipeline.engine.batch import UNTRACKED, Detections
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from pipeline.faces.tracking import FaceTracker
from pipeline.sinks.timeline_table import TimelineError
from training.synthetic_video import default_script, render_scripted_video

ROOT = Path(__file__).resolve().parent.parent
FPS, SECONDS = 15, 4.0
FRAMES = int(FPS * SECONDS)
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
COLUMNS = (["source", "frame", "pts", "track_id", "emotion", "score"] + [f"p_{name}" for name in CLASSES]
           + ["x1", "y1", "x2", "y2"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s at 15 fps of the two scripted faces."""
    path = tmp_path_factory.mktemp("api") / "clip.mp4"
    render_scripted_video(path, default_script(SECONDS), duration_s=SECONDS, fps=FPS)
    return path


@pytest.fixture(scope="module")
def detector(weights: Path, imgsz: int) -> EmotionDetector:
    return EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz))


def _images(video: Path, count: int) -> list[np.ndarray]:
    with av.open(str(video)) as container:
        return [frame.to_ndarray(format="bgr24") for _, frame in zip(range(count), container.decode(video=0))]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the package ---------------------------------------------------------------------------------------------------


def test_import_pipeline_loads_no_model_runtime_and_every_public_name_resolves() -> None:
    code = ("import sys, pipeline; before = sorted({'torch', 'ultralytics', 'pandas', 'supervision'} & set(sys.modules)); "
            "pipeline.read_timeline; print(before, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.stdout.strip() == "[] False", result.stdout + result.stderr  # reading timelines needs no torch
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None and name in dir(pipeline)
    assert pipeline.EmotionDetector is EmotionDetector and pipeline.Detections is Detections
    assert pipeline.ConfigError is ConfigError and pipeline.TimelineError is TimelineError
    with pytest.raises(AttributeError, match="no attribute 'analyse_video'"):
        pipeline.analyse_video  # noqa: B018


# --- analyze_video -------------------------------------------------------------------------------------------------


def test_analyze_video_writes_the_outputs_and_reports_them(clip: Path, weights: Path, tmp_path: Path) -> None:
    report = pipeline.analyze_video(clip, weights, out=tmp_path / "runs")
    assert isinstance(report, pipeline.RunReport)
    assert report.source_id == "clip" and report.output_dir == tmp_path / "runs" / "clip" and report.opened
    assert report.summary.frames == FRAMES and report.summary.faces == 2 * FRAMES
    assert sum(report.summary.emotions.values()) == report.summary.faces
    assert report.model_id.startswith("emotion-demo-") and report.backend and report.fps > 0
    assert (report.source_problem, report.redis_problem, report.redis_written, report.interrupted) == \
        (None, None, 0, False)
    assert sorted(path.name for path in report.output_dir.iterdir()) == \
        ["events.jsonl", "summary.json", "timeline.csv", "timeline.jsonl"]
    assert [record["frame"] for record in _records(report.output_dir / "timeline.jsonl")] == list(range(FRAMES))
    assert json.loads((report.output_dir / "summary.json").read_text())["frames"] == FRAMES

    named = pipeline.analyze_video(clip, weights, out=tmp_path / "runs", source_id="interview-1")
    assert named.output_dir == tmp_path / "runs" / "interview-1" and named.summary.faces == report.summary.faces


def test_settings_dotted_and_nested_are_the_same_settings(clip: Path, weights: Path, tmp_path: Path) -> None:
    dotted = pipeline.analyze_video(clip, weights, out=tmp_path / "dotted", **{"source.stride": 2, "model.conf": 0.5})
    nested = pipeline.analyze_video(clip, weights, out=tmp_path / "nested", source={"stride": 2}, model={"conf": 0.5})
    assert dotted.summary.frames == nested.summary.frames == FRAMES // 2
    assert pipeline.read_timeline(dotted.output_dir).equals(pipeline.read_timeline(nested.output_dir))
    assert set(pipeline.read_timeline(dotted.output_dir)["frame"]) == set(range(0, FRAMES, 2))
    strict = pipeline.analyze_video(clip, weights, out=tmp_path / "strict", model={"conf": 0.999})
    assert strict.summary.faces < dotted.summary.faces * 2  # the threshold reached the detector


@pytest.mark.parametrize(("settings", "message"), [
    ({"model.confidence": 0.4}, r"analyze_video: unknown key 'model\.confidence' \(did you mean 'conf'\?\)"),
    ({"model": {"confidence": 0.4}}, r"unknown key 'model\.confidence'"),
    ({"modle": {"conf": 0.4}}, r"analyze_video: unknown section 'modle' \(did you mean 'model'\?\)"),
    ({"conf": 0.4}, r"unknown setting 'conf'.*did you mean 'model\.conf'"),
    ({"model": 0.4}, r"section 'model' takes a mapping"),
    ({"model.conf": "high"}, r"'model\.conf' must be float, got 'high'"),
    ({"model.conf": 1.5}, r"'model\.conf' must be between 0 and 1"),
    ({"source.stride": 0}, r"'source\.stride' must be at least 1"),
    ({"output.dir": "elsewhere"}, r"output\.dir is the 'out' argument"),
    ({"model": {"weights": "other.pt"}}, r"model\.weights is the 'weights' argument"),
    ({"redis.url": "redis://localhost"}, r"redis\.url is the 'redis' argument"),
    ({"redis": {"prefix": "x"}}, r"redis is the Redis URL; give the other Redis settings dotted"),
])
def test_bad_settings_are_refused_with_the_loaders_error_before_anything_runs(
    settings: dict, message: str, clip: Path, weights: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        pipeline.analyze_video(clip, weights, out=tmp_path / "runs", **settings)
    assert not (tmp_path / "runs").exists()


def test_redis_none_follows_redis_url_and_false_writes_none(
    clip: Path, weights: Path, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    files_only = pipeline.analyze_video(clip, weights, out=tmp_path, redis=False)
    assert files_only.redis_written == 0 and client.dbsize() == 0
    streamed = pipeline.analyze_video(clip, weights, out=tmp_path)
    assert streamed.redis_problem is None and streamed.redis_written == FRAMES
    assert client.xlen("emotion:frames:clip") == FRAMES


# --- read_timeline -------------------------------------------------------------------------------------------------


def test_read_timeline_from_the_file_the_run_folder_and_redis_is_one_table(
    clip: Path, weights: Path, tmp_path: Path, redis_url: str
) -> None:
    report = pipeline.analyze_video(clip, weights, out=tmp_path / "runs", redis=redis_url, source_id="cam-1")
    jsonl = report.output_dir / "timeline.jsonl"
    table = pipeline.read_timeline(jsonl)

    assert list(table.columns) == COLUMNS
    assert str(table["track_id"].dtype) == "Int64" and table["frame"].dtype == np.int64
    assert all(table[column].dtype == np.float64 for column in COLUMNS[2:] if column not in ("track_id", "emotion"))
    assert len(table) == report.summary.faces and set(table["source"]) == {"cam-1"}
    assert table["emotion"].value_counts().to_dict() == dict(report.summary.emotions)
    assert table.groupby("track_id").size().to_dict() == {1: FRAMES, 2: FRAMES}  # two faces, tracked throughout
    first = _records(jsonl)[0]
    face = first["faces"][0]
    row = table.iloc[0]
    assert (row["frame"], row["pts"], row["track_id"], row["emotion"], row["score"]) == \
        (first["frame"], first["pts"], face["id"], face["emotion"], face["score"])
    assert [row[f"p_{name}"] for name in CLASSES] == [face["scores"][name] for name in CLASSES]
    assert [row[name] for name in ("x1", "y1", "x2", "y2")] == face["box"]
    assert ((table[[f"p_{name}" for name in CLASSES]] >= 0) & (table[[f"p_{name}" for name in CLASSES]] <= 1)).all().all()

    pd.testing.assert_frame_equal(pipeline.read_timeline(report.output_dir), table)
    pd.testing.assert_frame_equal(pipeline.read_timeline(str(report.output_dir)), table)
    pd.testing.assert_frame_equal(pipeline.read_timeline(tmp_path / "runs", "cam-1"), table)
    pd.testing.assert_frame_equal(pipeline.read_timeline(jsonl, "cam-1"), table)
    pd.testing.assert_frame_equal(pipeline.read_timeline(redis_url, "cam-1"), table)
    pd.testing.assert_frame_equal(pipeline.read_timeline(redis_url, source_id="cam-1", prefix="emotion", contract=1),
                                  table)


def test_read_timeline_from_redis_under_another_prefix_and_contract_2(
    clip: Path, weights: Path, tmp_path: Path, redis_url: str
) -> None:
    report = pipeline.analyze_video(clip, weights, out=tmp_path, redis=redis_url,
                                    **{"redis.prefix": "studio", "redis.contract": 2})
    assert redis.Redis.from_url(redis_url).xlen("studio:{clip}:frames") == FRAMES
    from_redis = pipeline.read_timeline(redis_url, "clip", prefix="studio", contract=2)
    pd.testing.assert_frame_equal(from_redis, pipeline.read_timeline(report.output_dir))
    with pytest.raises(TimelineError, match=r"holds no frames of source 'clip': studio:frames:clip is empty or "
                                            r"missing \(studio:\{clip\}:frames holds them: pass contract=2\)"):
        pipeline.read_timeline(redis_url, "clip", prefix="studio")
    with pytest.raises(TimelineError, match=r"emotion:frames:clip is empty or missing \(nothing there under prefix "
                                            r"'emotion': pass the prefix= the run wrote with\)"):
        pipeline.read_timeline(redis_url, "clip")


def test_frames_without_faces_add_no_rows(clip: Path, weights: Path, tmp_path: Path) -> None:
    empty_video = tmp_path / "empty.mp4"
    render_scripted_video(empty_video, [], duration_s=1.0, fps=FPS)
    nobody = pipeline.analyze_video(empty_video, weights, out=tmp_path / "runs")
    assert nobody.summary.frames == FPS and nobody.summary.faces == 0
    empty = pipeline.read_timeline(nobody.output_dir)
    assert empty.empty and list(empty.columns) == COLUMNS[:6] + COLUMNS[-4:]

    report = pipeline.analyze_video(clip, weights, out=tmp_path / "runs")
    records = _records(report.output_dir / "timeline.jsonl")
    for record in records[10:20]:  # the same run, with frames 10 to 19 found empty
        record["faces"] = []
    gaps = tmp_path / "gaps.jsonl"
    gaps.write_text("".join(json.dumps(record) + "\n" for record in records))
    table = pipeline.read_timeline(gaps)
    assert len(table) == report.summary.faces - 20 and set(range(10, 20)).isdisjoint(table["frame"])
    assert table["frame"].nunique() == FRAMES - 10


def test_timeline_records_are_read_by_name(clip: Path, weights: Path, tmp_path: Path) -> None:
    """Fields a writer adds within a version are ignored; records written before `v` and `lat` are read too."""
    report = pipeline.analyze_video(clip, weights, out=tmp_path)
    table = pipeline.read_timeline(report.output_dir)
    records = _records(report.output_dir / "timeline.jsonl")
    older = [{key: value for key, value in record.items() if key not in ("v", "lat")} for record in records]
    newer = [{"extra": {"nested": [1, 2]}, **record, "note": "x"} for record in records]
    for name, shaped in (("older", older), ("newer", newer)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(record) + "\n" for record in shaped))
        pd.testing.assert_frame_equal(pipeline.read_timeline(tmp_path / f"{name}.jsonl"), table)


def test_bad_input_names_the_problem_and_the_input(clip: Path, weights: Path, tmp_path: Path, redis_url: str) -> None:
    report = pipeline.analyze_video(clip, weights, out=tmp_path / "runs", redis=redis_url)
    jsonl = report.output_dir / "timeline.jsonl"
    lines = jsonl.read_text().splitlines()

    with pytest.raises(FileNotFoundError, match=f"no timeline at {re.escape(str(tmp_path / 'nowhere'))}"):
        pipeline.read_timeline(tmp_path / "nowhere")
    with pytest.raises(TimelineError, match=r"runs is a folder without timeline\.jsonl; it holds the run folders of "
                                            r"clip: pass one of them, or source_id"):
        pipeline.read_timeline(tmp_path / "runs")
    with pytest.raises(TimelineError, match=r"holds no timeline\.jsonl of source 'other' \(sources there: clip\)"):
        pipeline.read_timeline(tmp_path / "runs", "other")
    with pytest.raises(TimelineError, match=r"holds source 'clip', not 'other'"):
        pipeline.read_timeline(jsonl, "other")
    with pytest.raises(TimelineError, match=f"{re.escape(str(clip))} is not a timeline.jsonl \\(not UTF-8 text\\)"):
        pipeline.read_timeline(clip)
    with pytest.raises(TimelineError, match=r"timeline\.csv line 1 is not a frame record: not valid JSON"):
        pipeline.read_timeline(report.output_dir / "timeline.csv")
    with pytest.raises(TimelineError, match="source_id 'a/b' is not a source id"):
        pipeline.read_timeline(tmp_path, "a/b")

    broken = tmp_path / "broken.jsonl"
    record = json.loads(lines[5])
    record["faces"][0]["score"] = "high"
    broken.write_text("\n".join(lines[:5] + [json.dumps(record)] + lines[6:]) + "\n")
    with pytest.raises(TimelineError, match=r"broken\.jsonl line 6 is not a frame record: faces\[0\]\.score is not a "
                                            r"number: 'high'"):
        pipeline.read_timeline(broken)

    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines) + "\n" + lines[-1][:30])  # an interrupted write: half a line, no newline
    with pytest.warns(UserWarning, match=f"cut.jsonl line {len(lines) + 1} is cut short"):
        assert len(pipeline.read_timeline(cut)) == report.summary.faces

    with pytest.raises(TimelineError, match="needs source_id"):
        pipeline.read_timeline(redis_url)
    with pytest.raises(TimelineError, match=r"holds no frames of source 'other'.*\(sources there under prefix "
                                            r"'emotion': clip\)"):
        pipeline.read_timeline(redis_url, "other")
    with pytest.raises(TimelineError, match="contract must be one of 1, 2, got 3"):
        pipeline.read_timeline(redis_url, "clip", contract=3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    with pytest.raises(SinkError, match=f"lost Redis while reading emotion:frames:clip at {re.escape(closed)}"):
        pipeline.read_timeline(closed, "clip")


def test_malformed_redis_entries_are_left_out_with_a_warning(
    clip: Path, weights: Path, tmp_path: Path, redis_url: str
) -> None:
    report = pipeline.analyze_video(clip, weights, out=tmp_path, redis=redis_url)
    bad_id = redis.Redis.from_url(redis_url).xadd("emotion:frames:clip", {"v": "1", "frame": "x"}).decode()
    with pytest.warns(UserWarning, match=f"skipped entry {bad_id} of emotion:frames:clip: frame is not valid JSON"):
        table = pipeline.read_timeline(redis_url, "clip")
    pd.testing.assert_frame_equal(table, pipeline.read_timeline(report.output_dir))


# --- EmotionDetector and Detections.to_supervision -----------------------------------------------------------------


def test_to_supervision_carries_every_array(clip: Path, detector: EmotionDetector) -> None:
    import supervision as sv

    images = _images(clip, 3)
    found = detector.detect(images)
    assert found.face_counts().tolist() == [2, 2, 2]
    converted = found.to_supervision(detector.names)
    assert isinstance(converted, sv.Detections) and len(converted) == len(found) == 6
    assert np.array_equal(converted.xyxy, found.xyxy) and np.array_equal(converted.confidence, found.confidence)
    assert np.array_equal(converted.class_id, found.class_id) and converted.tracker_id is None
    assert np.array_equal(converted.data["scores"], found.scores)
    assert converted.data["frame"].tolist() == [0, 0, 1, 1, 2, 2]
    assert converted.data["class_name"].tolist() == [detector.names[c] for c in found.class_id]
    assert set(found.to_supervision().data) == {"scores", "frame"}
    alone = found.select([1]).to_supervision()
    assert np.array_equal(alone.xyxy, found.xyxy[2:4]) and alone.data["frame"].tolist() == [0, 0]

    tracker = FaceTracker()
    for number in range(len(images)):
        rows = found.rows(number)
        found.tracker_id[rows] = tracker.update(found.xyxy[rows], found.confidence[rows], found.class_id[rows])
    found.tracker_id[-1] = UNTRACKED  # a face no track holds keeps -1 beside the tracked ones
    tracked = found.to_supervision()
    assert tracked.tracker_id.tolist() == found.tracker_id.tolist()
    assert set(tracked.tracker_id[:4].tolist()) == {1, 2} and tracked.tracker_id[-1] == UNTRACKED

    empty = detector.detect([np.zeros((90, 160, 3), np.uint8)]).to_supervision(detector.names)
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4) and empty.data["scores"].shape == (0, len(detector.names))
    with pytest.raises(ValueError, match="2 class names given for a model of 7 classes"):
        found.to_supervision(["a", "b"])


def test_to_supervision_without_the_extra_names_it(detector: EmotionDetector, monkeypatch: pytest.MonkeyPatch) -> None:
    found = detector.detect([np.zeros((90, 160, 3), np.uint8)])
    monkeypatch.setitem(sys.modules, "supervision", None)  # as in an install without the extra
    with pytest.raises(ImportError, match=re.escape("pip install 'emotion-stream[supervision]'")):
        found.to_supervision()


# --- quiet by default ----------------------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_nothing_of_ultralytics_is_printed_unless_asked(
    clip: Path, weights: Path, imgsz: int, tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even in a program that imported ultralytics verbose (its logger at INFO, printing), and with the CPU export
    still to make (a fresh cache): the export banners and "Loading ... for OpenVINO inference" stay out."""
    import ultralytics  # noqa: F401  (the program imported it first)

    logger = logging.getLogger("ultralytics")
    records, printer, level = _Records(), logging.StreamHandler(sys.stdout), logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(records)
    logger.addHandler(printer)
    try:
        monkeypatch.setenv("EMOTION_STREAM_CACHE", str(tmp_path / "cache"))
        capfd.readouterr()
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            report = pipeline.analyze_video(clip, weights, out=tmp_path / "quiet")
            found = pipeline.EmotionDetector(weights, settings=DetectorSettings(imgsz=imgsz)).detect(_images(clip, 2))
        out, err = capfd.readouterr()
        assert report.summary.faces == 2 * FRAMES and len(found) == 4
        assert out == "" and not re.search("ultralytics|openvino|onnx|export", err, re.I), out + err
        assert [record.getMessage() for record in records.records] == []
        assert not [str(w.message) for w in shown if re.search(r"torch[/\\](jit|onnx)", w.filename)]
        assert logger.level == logging.INFO  # put back after the call

        monkeypatch.setenv("EMOTION_STREAM_CACHE", str(tmp_path / "cache-verbose"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's, shown as they are with verbose=True
            pipeline.analyze_video(clip, weights, out=tmp_path / "verbose", verbose=True)
        out, _ = capfd.readouterr()
        assert records.records and out, "verbose=True shows ultralytics' lines (and this test would see them)"
    finally:
        logger.removeHandler(records)
        logger.removeHandler(printer)
        logger.setLevel(level)


# --- docs/python-api.md --------------------------------------------------------------------------------------------


def test_the_documented_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "python-api.md").read_text(), re.S | re.M)
    assert len(blocks) == 1, "docs/python-api.md has one runnable example"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its temporary folder inside this test's
    namespace: dict = {"__name__": "__main__"}
    exec(compile(blocks[0], str(ROOT / "docs" / "python-api.md"), "exec"), namespace)
    report, timeline = namespace["report"], namespace["timeline"]
    assert report.output_dir.is_relative_to(tmp_path) and report.summary.frames == FRAMES
    assert len(timeline) == report.summary.faces and len(namespace["faces"]) == 2
    assert "happy" in capsys.readouterr().out
