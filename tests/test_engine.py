"""The staged engine: order per source, status after the last frame, one source failing alone,
several devices, and `process` of many files, on real H.264 files and a real (tiny) model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis

from pipeline.core.config import PipelineConfig
from pipeline.core.errors import ConfigError
from pipeline.core.states import SourceState
from pipeline.core.types import StatusChange
from pipeline.engine.batch import Detections, FrameInfo
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from pipeline.engine.forward import CompileMode
from pipeline.engine.stages import Engine
from pipeline.faces.analytics import SourceAnalytics
from pipeline.files.feed import FileFeed, FileJob
from pipeline.files.process import process_files
from pipeline.files.sources import VideoFileSource
from pipeline.sinks.source_output import SourceOutput
from tests.videos import gradient_frames, write_video
from training.model_factory import untrained_detector

IMGSZ = 96


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 7-class YOLOv8n: real weights, real forward passes, no training needed."""
    return untrained_detector(tmp_path_factory.mktemp("tiny") / "tiny.pt", "yolov8n.yaml")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three H.264 files of different lengths and sizes."""
    folder = tmp_path_factory.mktemp("videos")
    return [
        write_video(folder / "a.mp4", gradient_frames(37)),
        write_video(folder / "b.mp4", gradient_frames(55, 128, 72)),
        write_video(folder / "c.mp4", gradient_frames(20)),
    ]


class RecordingOutput(SourceOutput):
    """The real per-source output (files, analytics), also noting the order of what reached it."""

    def __init__(self, source_id: str, detector: EmotionDetector, folder: Path, fail_after: int | None = None):
        from pipeline.core.config import EventSettings, TrackerSettings
        from pipeline.sinks.files import FileSink

        analytics = SourceAnalytics(source_id, detector.names, TrackerSettings(), EventSettings(), 1 / 25)
        super().__init__(source_id, detector.names, analytics, FileSink(folder / source_id, detector.names, "m"))
        self.seen: list[int | str] = []
        self.fail_after = fail_after

    def write(self, detections: Detections | None, events: list) -> int:
        if detections is not None:
            if self.fail_after is not None and len(self.seen) + len(detections.frames) > self.fail_after:
                raise OSError(28, "No space left on device")
            self.seen += [frame.index for frame in detections.frames]
        return super().write(detections, events)

    def status(self, change: StatusChange) -> None:
        self.seen.append(change.state.value)
        super().status(change)


def _run(detectors: list[EmotionDetector], videos: list[Path], folder: Path,
         fail: dict[str, int] | None = None, batch: int = 8) -> dict[str, RecordingOutput]:
    sources = [VideoFileSource(video) for video in videos]
    outputs = {s.source_id: RecordingOutput(s.source_id, detectors[0], folder, (fail or {}).get(s.source_id))
               for s in sources}
    jobs = [FileJob(source.source_id, source.path, lambda source=source: source) for source in sources]
    engine = Engine(detectors, FileFeed(jobs, open_files=3, queue_size=16), outputs, batch)
    engine.start()
    engine.wait()
    for output in outputs.values():
        output.close()
    return outputs


def test_every_frame_once_in_order_and_ended_after_the_last(tiny_weights: Path, videos: list[Path],
                                                            tmp_path: Path) -> None:
    detector = EmotionDetector(tiny_weights, "cpu", DetectorSettings(imgsz=IMGSZ, conf=0.001))
    outputs = _run([detector], videos, tmp_path)
    for video, expected in zip(videos, (37, 55, 20)):
        seen = outputs[video.stem].seen
        assert seen == ["live", *range(expected), "ended"], f"{video.stem}: {seen[:5]}...{seen[-5:]}"
        lines = (tmp_path / video.stem / "timeline.jsonl").read_text().splitlines()
        assert [json.loads(line)["frame"] for line in lines] == list(range(expected))


def test_two_lanes_give_the_same_timelines_as_one(tiny_weights: Path, videos: list[Path], tmp_path: Path) -> None:
    settings = DetectorSettings(imgsz=IMGSZ, conf=0.001)
    one = _run([EmotionDetector(tiny_weights, "cpu", settings)], videos, tmp_path / "one", batch=4)
    two = _run([EmotionDetector(tiny_weights, "cpu", settings) for _ in range(2)], videos, tmp_path / "two", batch=4)
    for source_id in one:
        assert one[source_id].seen == two[source_id].seen
        first = [json.loads(line) for line in (tmp_path / "one" / source_id / "timeline.jsonl").open()]
        second = [json.loads(line) for line in (tmp_path / "two" / source_id / "timeline.jsonl").open()]
        assert [(f["frame"], f["faces"]) for f in first] == [(f["frame"], f["faces"]) for f in second]
        assert sum(len(f["faces"]) for f in first) > 0, "the comparison needs faces to compare"


def test_a_failing_sink_fails_its_source_and_the_others_go_on(tiny_weights: Path, videos: list[Path],
                                                              tmp_path: Path) -> None:
    detector = EmotionDetector(tiny_weights, "cpu", DetectorSettings(imgsz=IMGSZ))
    outputs = _run([detector], videos, tmp_path, fail={"b": 20})
    failed = outputs["b"]
    assert failed.failure and "No space left on device" in failed.failure
    assert failed.state is SourceState.FAILED
    assert failed.seen[0] == "live" and all(isinstance(i, int) for i in failed.seen[1:]) and len(failed.seen) <= 21
    assert outputs["a"].seen == ["live", *range(37), "ended"]
    assert outputs["c"].seen == ["live", *range(20), "ended"]


def test_a_failing_tracker_fails_its_source_only(tiny_weights: Path, videos: list[Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    detector = EmotionDetector(tiny_weights, "cpu", DetectorSettings(imgsz=IMGSZ))
    real_track = SourceOutput.track

    def track(self: SourceOutput, detections: Detections) -> list:
        if self.source_id == "c" and detections.frames[-1].index >= 10:
            raise ValueError("track state corrupted")
        return real_track(self, detections)

    monkeypatch.setattr(SourceOutput, "track", track)
    outputs = _run([detector], videos, tmp_path)
    assert outputs["c"].failure == "tracking failed: track state corrupted"
    assert outputs["a"].seen == ["live", *range(37), "ended"]
    assert outputs["b"].seen == ["live", *range(55), "ended"]


def test_process_many_files_into_redis_with_one_engine(tiny_weights: Path, videos: list[Path], redis_url: str,
                                                       tmp_path: Path) -> None:
    config = PipelineConfig()
    config.model.weights, config.model.imgsz, config.model.cpu_backend = str(tiny_weights), IMGSZ, "pytorch"
    config.redis.url, config.output.dir = redis_url, str(tmp_path / "out")
    missing = tmp_path / "missing.mp4"
    reports = process_files(config, [*videos, missing], show_progress=False)
    assert [r.source_id for r in reports] == ["a", "b", "c", "missing"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for report, expected in zip(reports, (37, 55, 20)):
        assert report.summary.frames == expected and report.source_problem is None
        entries = client.xrange(f"emotion:frames:{report.source_id}")
        assert [int(fields["frame"]) for _id, fields in entries] == list(range(expected))
        assert json.loads(client.hget("emotion:sources", report.source_id))["state"] == "ended"
        summary = json.loads((tmp_path / "out" / report.source_id / "summary.json").read_text())
        assert summary["frames"] == expected and "inference" in summary["stages"]
    assert "video not found" in reports[3].source_problem


def test_process_command_takes_a_folder_and_names_a_bad_file(tiny_weights: Path, videos: list[Path],
                                                             tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    for video in videos[:2]:
        (folder / video.name).write_bytes(video.read_bytes())
    (folder / "broken.mp4").write_bytes(b"\x00" * 2048)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "emotion-stream"), "process", str(folder), "--weights", str(tiny_weights), "--imgsz",
         str(IMGSZ), "--cpu-backend", "pytorch", "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "broken.mp4" in result.stderr and "not a readable video" in result.stderr
    assert "3 files: 2 complete, 1 with problems (broken)" in result.stdout
    assert len((tmp_path / "out" / "a" / "timeline.jsonl").read_text().splitlines()) == 37


def test_boxes_scale_back_to_the_source_size_of_downscaled_frames(tiny_weights: Path) -> None:
    """Frames shrunk on the way (shared memory) get boxes in the source's own pixels."""
    detector = EmotionDetector(tiny_weights, "cpu", DetectorSettings(imgsz=IMGSZ, conf=0.001))
    half = np.ascontiguousarray(gradient_frames(1, 160, 96)[0][::2, ::2])
    in_half_pixels = detector.detect([half])
    in_source_pixels = detector.detect([half], [FrameInfo("s", 0, 0.0, 0.0, 160, 96)])
    assert len(in_half_pixels) > 0
    np.testing.assert_allclose(in_source_pixels.xyxy, in_half_pixels.xyxy * 2, atol=1e-3)
    assert in_source_pixels.frames[0].width == 160


@pytest.mark.parametrize("mode", [CompileMode.CUDA_GRAPH, CompileMode.COMPILE])
def test_cuda_only_modes_fall_back_to_eager_with_one_line(tiny_weights: Path, mode: CompileMode,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    detector = EmotionDetector(tiny_weights, "cpu", DetectorSettings(imgsz=IMGSZ, conf=0.001, compile=mode))
    assert detector.forward.mode is CompileMode.OFF
    assert f"model.compile={mode.value} needs .pt weights on a CUDA device" in caplog.text
    eager = EmotionDetector(tiny_weights, "cpu", DetectorSettings(imgsz=IMGSZ, conf=0.001))
    image = gradient_frames(1)[0]
    np.testing.assert_array_equal(detector.detect([image]).xyxy, eager.detect([image]).xyxy)


def test_a_folder_of_more_files_than_open_descriptors(tiny_weights: Path, videos: list[Path], tmp_path: Path) -> None:
    """Files open when their turn comes: 100 files under a limit of 96 descriptors all complete."""
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(100):
        (folder / f"v{number:03d}.mp4").write_bytes(videos[2].read_bytes())
    command = (f"ulimit -n 96; exec {Path(sys.executable).parent / 'emotion-stream'} process {folder} --weights "
               f"{tiny_weights} --imgsz {IMGSZ} --cpu-backend pytorch --batch 16 --out {tmp_path / 'out'} --quiet")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "100 files: 100 complete" in result.stdout
    assert len((tmp_path / "out" / "v099" / "timeline.jsonl").read_text().splitlines()) == 20


def test_process_files_refuses_a_file_given_twice_before_writing(videos: list[Path], tmp_path: Path) -> None:
    config = PipelineConfig()
    config.output.dir = str(tmp_path / "out")
    same = videos[0].parent / ".." / videos[0].parent.name / videos[0].name
    with pytest.raises(ConfigError, match=f"{same} is given twice: give each file once"):
        process_files(config, [videos[0], videos[1], same], show_progress=False)
    assert not (tmp_path / "out").exists()
