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


@dataclass(frozen=True)
class LiveStreamResult:
    """One paced stream of a live bench."""

    source_id: str
    fps: float
    drop_rate: float
    latency_ms: tuple[float, float, float] | None


def run_live_bench(config: PipelineConfig, video: str | Path, streams: int, seconds: float) -> list[LiveStreamResult]:
    """`streams` copies of `video` paced at its native frame rate, as cameras; print fps, latency, drops."""
    from pipeline.config import SourceSpec
    from pipeline.redis_server import LocalRedisServer
    from pipeline.serve import serve

    fps = VideoFileSource(video).info.fps
    config.sources = [SourceSpec(f"stream{i + 1}", str(video), loop=True) for i in range(streams)]
    config.output.files = False
    config.metrics.log_interval_s = max(seconds, 1.0) * 2
    detector = load_detector(config)
    print(
        f"live bench: {streams} stream(s) of {video} paced at {fps:.0f} fps ({streams * fps:.0f} frames/s offered), "
        f"{config.model.weights} at imgsz {config.model.imgsz} on {config.model.device}, {seconds:.0f}s"
    )
    with LocalRedisServer() as private:
        config.redis.url = config.redis.url or private.url
        report = serve(config, detector=detector, realtime_files=True, max_seconds=seconds)
    results = []
    for source_id, metrics in report.metrics.sources.items():
        offered = metrics.frames + report.dropped[source_id]
        results.append(
            LiveStreamResult(
                source_id,
                metrics.frames / report.seconds,
                report.dropped[source_id] / offered if offered else 0.0,
                metrics.percentiles(),
            )
        )
    print(f"  {'source':<10} {'fps':>6} {'dropped':>8}  latency p50/p95/p99 (receive to Redis write)")
    for row in results:
        latency = "-" if row.latency_ms is None else " / ".join(f"{value:.0f}" for value in row.latency_ms) + " ms"
        print(f"  {row.source_id:<10} {row.fps:6.1f} {row.drop_rate:8.1%}  {latency}")
    total = sum(row.fps for row in results)
    mean_drop = sum(row.drop_rate for row in results) / len(results)
    print(f"  {'all':<10} {total:6.1f} {mean_drop:8.1%}")
    return results


def run_backend_bench(
    config: PipelineConfig, video: str | Path, backends: list[str], max_frames: int | None = None
) -> list[Throughput]:
    """The pipeline on each CPU runtime for the same .pt weights, in one run; ratios against PyTorch FP32."""
    print(f"backends: {video}, {config.model.weights} at imgsz {config.model.imgsz}, batch {config.batching.batch}")
    results = []
    for backend in backends:
        config.model.cpu_backend = backend
        results.append(_time_pipeline(config, video, max_frames))
    baseline = next((r.fps for r in results if r.backend == "pt"), results[0].fps)
    for result in results:
        print(f"  {result.backend:<9} {result.fps:7.2f} frames/s   {result.fps / baseline:.2f}x PyTorch FP32")
    return results
