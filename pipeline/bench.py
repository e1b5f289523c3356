"""`emotion-stream bench`: the pipeline against `YOLO.predict(stream=True)` in one run."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.errors import ModelError
from pipeline.runner import load_detector, process_video
from pipeline.sources import VideoFileSource


@dataclass(frozen=True)
class Throughput:
    """Frames processed and the seconds they took."""

    backend: str
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        """Frames per second."""
        return self.frames / self.seconds if self.seconds else 0.0


def run_bench(config: PipelineConfig, video: str | Path, max_frames: int | None = None) -> tuple[Throughput, Throughput]:
    """Time YOLO.predict and the pipeline on the same video, weights, image size and device; print both."""
    if not config.model.weights:
        raise ModelError("no weights given: pass --weights")
    source = VideoFileSource(video, max_frames=max_frames)
    info, frames = source.info, source.expected_frames
    source.close()
    print(
        f"bench: {video} ({info.width}x{info.height}, {frames or '?'} frames), {config.model.weights} "
        f"at imgsz {config.model.imgsz} on {config.model.device}, batch {config.batching.batch}"
    )
    reference = _time_yolo_predict(config, video, max_frames)
    print(f"  YOLO.predict(stream=True)  {reference.backend:<9} {reference.fps:7.2f} frames/s")
    ours = _time_pipeline(config, video, max_frames)
    print(f"  emotion-stream pipeline    {ours.backend:<9} {ours.fps:7.2f} frames/s   {ours.fps / reference.fps:.2f}x")
    return reference, ours


def _time_yolo_predict(config: PipelineConfig, video: str | Path, max_frames: int | None) -> Throughput:
    from ultralytics import YOLO

    model = YOLO(str(config.model.weights), task="detect")
    settings = dict(
        imgsz=config.model.imgsz,
        device=config.model.device,
        conf=config.model.conf,
        iou=config.model.iou,
        max_det=config.model.max_det,
        agnostic_nms=config.model.agnostic_nms,
        verbose=False,
    )
    first = next(iter(VideoFileSource(video, max_frames=1))).image
    model.predict(first, **settings)  # load and warm up outside the timing
    count = 0
    started = time.perf_counter()
    for _result in model.predict(str(video), stream=True, **settings):
        count += 1
        if max_frames and count >= max_frames:
            break
    backend = "pytorch" if str(config.model.weights).endswith(".pt") else Path(config.model.weights).suffix
    return Throughput(backend, count, time.perf_counter() - started)


def _time_pipeline(config: PipelineConfig, video: str | Path, max_frames: int | None) -> Throughput:
    detector = load_detector(config)
    warmup = [frame.image for frame in VideoFileSource(video, max_frames=config.batching.batch)]
    detector.detect(warmup)
    with tempfile.TemporaryDirectory() as out:
        config.output.dir, config.redis.url = out, None
        report = process_video(config, video, "bench", detector, show_progress=False, max_frames=max_frames)
    return Throughput(detector.format, report.summary.frames, report.seconds)
