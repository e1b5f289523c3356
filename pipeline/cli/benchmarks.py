"""`emotion-stream bench`: the pipeline against `YOLO.predict(stream=True)` and against its own
forward-only ceiling (same runtime, batch and input shape), measured in the same run."""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from exporters.loading import loadable_weights
from pipeline.core.config import PipelineConfig, SourceSpec
from pipeline.core.errors import ModelError
from pipeline.engine.detector import EmotionDetector
from pipeline.engine.loading import load_detectors
from pipeline.files.process import process_files
from pipeline.files.sources import VideoFileSource


@dataclass(frozen=True)
class Throughput:
    """Frames processed and the seconds they took."""

    backend: str
    frames: int
    seconds: float
    stages: str = ""
    """Busy share per engine stage (pipeline runs)."""

    @property
    def fps(self) -> float:
        """Frames per second."""
        return self.frames / self.seconds if self.seconds else 0.0


def run_bench(
    config: PipelineConfig, video: str | Path, max_frames: int | None = None
) -> tuple[Throughput, Throughput, float]:
    """Time YOLO.predict, the pipeline and the forward-only ceiling on the same video and settings; print all."""
    if not config.model.weights:
        raise ModelError("no weights given: pass --weights")
    source = VideoFileSource(video, max_frames=max_frames)
    info, frames = source.info, source.expected_frames
    source.close()
    detectors = load_detectors(config.model, config.batching.batch)  # checks the weights and imgsz first
    imgsz = detectors[0].settings.imgsz
    print(
        f"bench: {video} ({info.width}x{info.height}, {frames or '?'} frames), {config.model.weights} "
        f"at imgsz {imgsz} on {config.model.device}, batch {config.batching.batch}"
    )
    reference = _time_yolo_predict(config, video, max_frames, imgsz)
    print(f"  YOLO.predict(stream=True)  {reference.backend:<9} {reference.fps:8.2f} frames/s")
    ceiling = forward_ceiling(detectors, video, config.batching.batch)
    ours = _time_pipeline(config, video, max_frames, detectors)
    print(f"  emotion-stream pipeline    {ours.backend}")
    print(f"                                       {ours.fps:8.2f} frames/s   {ours.fps / reference.fps:.2f}x YOLO.predict")
    print(f"  forward-only ceiling                 {ceiling:8.2f} images/s   pipeline at {ours.fps / ceiling:.0%} of it")
    print(f"  stages busy: {ours.stages}")
    return reference, ours, ceiling


def forward_ceiling(detectors: list[EmotionDetector], video: str | Path, batch: int, seconds: float = 3.0) -> float:
    """Images/s of the forward pass alone, on a full batch of the video's own frames (same runtime,
    batch and input shape as the pipeline; no decode, letterbox, NMS or writing), summed over devices."""
    images = [frame.image for frame in VideoFileSource(video, max_frames=batch)]
    images = (images * batch)[:batch]
    total = 0.0
    for detector in detectors:
        [model_input] = detector.prepare(images)  # one video: one letterbox shape
        model_input.wait()
        with torch.inference_mode():
            detector.forward(model_input.tensor)  # warm-up (and CUDA graph capture or compilation)
            _synchronize(detector)
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds or runs < 3:
                detector.forward(model_input.tensor)
                _synchronize(detector)
                runs += 1
            total += runs * batch / (time.perf_counter() - started)
    return total


def _synchronize(detector: EmotionDetector) -> None:
    if detector.device.type == "cuda":
        torch.cuda.synchronize(detector.device)


def _time_yolo_predict(config: PipelineConfig, video: str | Path, max_frames: int | None, imgsz: int) -> Throughput:
    from ultralytics import YOLO

    settings = dict(
        imgsz=imgsz,
        device=config.model.devices[0],
        conf=config.model.conf,
        iou=config.model.iou,
        max_det=config.model.max_det,
        agnostic_nms=config.model.agnostic_nms,
        verbose=False,
    )
    first = next(iter(VideoFileSource(video, max_frames=1))).image
    with loadable_weights(Path(config.model.weights)) as readable:
        model = YOLO(str(readable), task="detect")
        model.predict(first, **settings)  # load and warm up outside the timing
        count = 0
        started = time.perf_counter()
        for _result in model.predict(str(video), stream=True, **settings):
            count += 1
            if max_frames and count >= max_frames:
                break
        seconds = time.perf_counter() - started
    backend = "pytorch" if str(config.model.weights).endswith(".pt") else Path(config.model.weights).suffix
    return Throughput(backend, count, seconds)


def _time_pipeline(config: PipelineConfig, video: str | Path, max_frames: int | None,
                   detectors: list[EmotionDetector] | None = None) -> Throughput:
    detectors = detectors or load_detectors(config.model, config.batching.batch)
    warmup = [frame.image for frame in VideoFileSource(video, max_frames=config.batching.batch)]
    for detector in detectors:
        detector.detect(warmup)
    with tempfile.TemporaryDirectory() as out:
        config.output.dir, config.redis.url = out, None
        report = process_files(config, [video], detectors, show_progress=False, max_frames=max_frames)[0]
    return Throughput(detectors[0].description, report.summary.frames, report.seconds, report.stages)


@dataclass(frozen=True)
class LiveStreamResult:
    """One paced stream of a live bench."""

    source_id: str
    fps: float
    """Frames per second while the stream was live (start-up not counted)."""
    drop_rate: float
    latency_ms: tuple[float, float, float] | None


def run_live_bench(config: PipelineConfig, video: str | Path, streams: int, seconds: float,
                   detectors: list[EmotionDetector] | None = None) -> list[LiveStreamResult]:
    """`streams` copies of `video` paced at its native frame rate, as cameras; print fps, latency, drops,
    and the delivered frames/s against the forward-only ceiling."""
    from pipeline.live.serve import serve
    from pipeline.sinks.redis_server import LocalRedisServer

    config = copy.deepcopy(config)  # each run gets its own sources and private Redis
    fps = VideoFileSource(video).info.fps
    config.sources = [SourceSpec(f"stream{i + 1}", str(video), loop=True) for i in range(streams)]
    config.output.files = False
    config.metrics.log_interval_s = max(seconds, 1.0) * 2
    detectors = detectors or load_detectors(config.model, config.batching.batch)
    print(
        f"live bench: {streams} stream(s) of {video} paced at {fps:.0f} fps ({streams * fps:.0f} frames/s offered), "
        f"{config.model.weights} at imgsz {detectors[0].settings.imgsz} on {config.model.device}, {seconds:.0f}s"
    )
    with LocalRedisServer() as private:
        config.redis.url = config.redis.url or private.url
        report = serve(config, detectors=detectors, realtime_files=True, max_seconds=seconds)
    results = []
    for source_id, metrics in report.metrics.sources.items():
        offered = metrics.frames + report.dropped[source_id]
        results.append(
            LiveStreamResult(
                source_id,
                metrics.fps,
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
    ceiling = forward_ceiling(detectors, video, config.batching.batch)
    print(f"  forward-only ceiling {ceiling:.1f} images/s: delivered {total / ceiling:.0%} of it")
    print(f"  stages busy: {report.stages}")
    return results


AUTO_DROP_LIMIT = 0.005
"""`--streams auto`: the most cameras held with at most this share of frames dropped."""


def find_stream_capacity(config: PipelineConfig, video: str | Path, seconds: float) -> int:
    """The most paced copies of `video` served with 0.5% dropped or less, by bisection from the
    forward-only ceiling's estimate; prints each probe and the answer."""
    detectors = load_detectors(config.model, config.batching.batch)
    fps = VideoFileSource(video).info.fps or 25.0
    estimate = max(1, int(forward_ceiling(detectors, video, config.batching.batch) / fps))
    print(f"streams auto: the forward-only ceiling allows at most {estimate} stream(s) of {fps:.0f} fps")
    held, failed = 0, estimate + 1
    probe = estimate
    while failed - held > 1:
        rows = run_live_bench(config, video, probe, seconds, detectors)
        drop = sum(row.drop_rate for row in rows) / len(rows)
        held, failed = (probe, failed) if drop <= AUTO_DROP_LIMIT else (held, probe)
        probe = (held + failed) // 2 if held else max(1, probe // 2)
    print(f"streams auto: {held} stream(s) held at {AUTO_DROP_LIMIT:.1%} dropped or less")
    return held


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
