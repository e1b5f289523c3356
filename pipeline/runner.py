"""Wires a video file through decoder, batched detector and sinks: the `process` command."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from exporters.cache import cached_cpu_export
from pipeline.analytics import SourceAnalytics
from pipeline.config import PipelineConfig
from pipeline.contract import RedisKeys
from pipeline.decode import DecoderWorker
from pipeline.detector import DetectorSettings, EmotionDetector
from pipeline.errors import ModelError, SinkError
from pipeline.events import FaceEvent
from pipeline.shutdown import StopSignals
from pipeline.sinks.files import FileSink
from pipeline.sinks.redis_sink import RedisSink, connect
from pipeline.sinks.redis_writer import RedisWriter
from pipeline.sources import VideoFileSource
from pipeline.summary import TimelineSummary
from pipeline.types import Frame, FrameResult
from pipeline.uris import mask_uri

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What a finished run produced and what went wrong along the way."""

    source_id: str
    video: Path
    output_dir: Path
    summary: TimelineSummary
    model_id: str
    backend: str
    seconds: float = 0.0
    interrupted: bool = False
    source_problem: str | None = None
    redis_problem: str | None = None
    redis_written: int = 0
    redis_duplicates: int = 0

    @property
    def fps(self) -> float:
        """Processed frames per second of wall time."""
        return self.summary.frames / self.seconds if self.seconds else 0.0


def load_detector(config: PipelineConfig) -> EmotionDetector:
    """The detector for `config.model`, taking the CPU fast path for .pt weights on the CPU."""
    model = config.model
    if not model.weights:
        raise ModelError("no weights given: pass --weights or set model.weights in the config")
    settings = DetectorSettings(
        imgsz=model.imgsz, conf=model.conf, iou=model.iou, max_det=model.max_det, agnostic_nms=model.agnostic_nms
    )
    weights = Path(model.weights)
    if weights.suffix != ".pt" or model.device != "cpu" or model.cpu_backend == "pytorch":
        return EmotionDetector(weights, model.device, settings)
    source_model = EmotionDetector(weights, "cpu", settings)  # validates the weights before exporting
    fast = EmotionDetector(cached_cpu_export(weights, model.cpu_backend), "cpu", settings, source_model.model_id)
    log.info("CPU fast path: %s weights run on %s (%s)", weights.name, fast.format, fast.weights)
    return fast


def process_video(
    config: PipelineConfig,
    video: str | Path,
    source_id: str | None = None,
    detector: EmotionDetector | None = None,
    show_progress: bool = True,
    max_frames: int | None = None,
) -> RunReport:
    """Process one video file end to end; never raises after outputs have started to be written.

    Source and model errors raise before anything is written. Afterwards, problems (a
    truncated file, Redis going away, Ctrl-C) are recorded in the report and every result
    produced so far stays in the file outputs.
    """
    source = VideoFileSource(video, source_id, stride=config.source.stride, max_frames=max_frames)
    detector = detector or load_detector(config)
    output_dir = Path(config.output.dir) / source.source_id
    files = FileSink(output_dir, detector.names, detector.model_id)
    report = RunReport(source.source_id, source.path, output_dir, TimelineSummary(), detector.model_id, detector.format)
    redis_sink = _open_redis(config, source, detector, report)
    analytics = SourceAnalytics(source.source_id, detector.names, config.tracking, config.events,
                                source.stride / (source.info.fps or 30.0))
    started = time.perf_counter()
    bar = tqdm(
        total=source.expected_frames,
        unit="frame",
        desc=source.source_id,
        disable=not show_progress,
        dynamic_ncols=True,
    )
    try:
        with StopSignals() as stop, DecoderWorker(source, config.batching.queue_size) as decoder:
            for frames in decoder.batches(config.batching.batch):
                if stop.requested.is_set():
                    report.interrupted = True
                    break
                results, events = analytics.process(_detect(detector, frames))
                _write(files, redis_sink, results, events)
                report.summary.add(results, events)
                bar.update(len(results))
                bar.set_postfix(faces=report.summary.faces, refresh=False)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        final_events = analytics.finish(time.time())
        _write(files, redis_sink, [], final_events)
        report.summary.add([], final_events)
        files.close()
        report.seconds = time.perf_counter() - started
        report.source_problem = source.stopped_early
        _close_redis(redis_sink, report, config.redis.timeout_s * 2)
        (output_dir / "summary.json").write_text(json.dumps(_summary_json(report), indent=2))
    return report


def _write(files: FileSink, redis_sink: RedisSink | None, results: list[FrameResult], events: list[FaceEvent]) -> None:
    files.write(results)
    files.write_events(events)
    if redis_sink is not None:
        redis_sink.write(results)
        redis_sink.events(events)


def _detect(detector: EmotionDetector, frames: list[Frame]) -> list[FrameResult]:
    faces = detector.detect([frame.image for frame in frames])
    return [
        FrameResult(f.source_id, f.index, f.pts, f.wall_time, f.image.shape[1], f.image.shape[0], found)
        for f, found in zip(frames, faces)
    ]


def open_redis_writer(config: PipelineConfig, spill_path: Path) -> RedisWriter:
    """A background writer for `config.redis`, after checking that Redis answers (SinkError if not)."""
    connect(config.redis.url, config.redis.timeout_s).close()
    return RedisWriter(
        config.redis.url,
        timeout_s=config.redis.timeout_s,
        buffer_entries=config.redis.buffer_entries,
        spill_path=spill_path,
    )


def _open_redis(
    config: PipelineConfig, source: VideoFileSource, detector: EmotionDetector, report: RunReport
) -> RedisSink | None:
    if not config.redis.url:
        return None
    try:
        writer = open_redis_writer(config, report.output_dir / "redis-spill.jsonl")
    except SinkError as exc:
        report.redis_problem = f"{exc}; file outputs are still written to {report.output_dir}"
        return None
    keys = RedisKeys(config.redis.prefix)
    sink = RedisSink(writer, source.source_id, detector.model_id, keys, config.redis.maxlen, str(source.path))
    sink.status("live")
    return sink


def _close_redis(sink: RedisSink | None, report: RunReport, timeout_s: float) -> None:
    if sink is None:
        return
    sink.status("failed" if report.source_problem else "ended", report.source_problem or "")
    writer = sink.writer
    unwritten = writer.close(timeout_s)
    frames_key = sink.keys.frames(sink.source_id)
    report.redis_written, report.redis_duplicates = writer.written[frames_key], writer.duplicates[frames_key]
    if unwritten:
        report.redis_problem = (
            f"Redis at {mask_uri(writer.url)} did not come back: {unwritten} commands were not written; "
            f"the file outputs in {report.output_dir} hold every frame"
        )


def _summary_json(report: RunReport) -> dict:
    return {
        "source": report.source_id,
        "video": str(Path(report.video).resolve()),
        "model": report.model_id,
        "backend": report.backend,
        "seconds": round(report.seconds, 3),
        "fps": round(report.fps, 2),
        "interrupted": report.interrupted,
        "source_problem": report.source_problem,
        "redis_problem": report.redis_problem,
        "redis_written": report.redis_written,
        "redis_duplicates": report.redis_duplicates,
        **report.summary.to_json(),
    }
