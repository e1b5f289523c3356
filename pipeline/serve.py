"""`emotion-stream serve`: many live sources through one detector into Redis, for weeks.

Decoder processes (see `supervisor`) feed shared memory; this loop takes fair batches,
runs the detector, hands results to the sinks, reports state changes and metrics, and on
SIGINT/SIGTERM stops the decoders, finishes the batch in flight and flushes the sinks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.analytics import SourceAnalytics
from pipeline.config import PipelineConfig
from pipeline.contract import RedisKeys
from pipeline.detector import EmotionDetector
from pipeline.errors import ConfigError
from pipeline.events import FaceEvent
from pipeline.metrics import PipelineMetrics
from pipeline.runner import load_detector
from pipeline.shutdown import StopSignals
from pipeline.sinks.files import FileSink
from pipeline.sinks.redis_sink import RedisSink
from pipeline.sinks.redis_writer import Command, RedisWriter
from pipeline.supervisor import DecoderSupervisor, SlotFrame, SourceHandle
from pipeline.types import Face, FrameResult

log = logging.getLogger(__name__)


@dataclass
class ServeReport:
    """How a serving run ended, per source."""

    seconds: float = 0.0
    frames: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    reconnects: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    redis_unwritten: int = 0
    metrics: PipelineMetrics | None = None


def serve(
    config: PipelineConfig,
    detector: EmotionDetector | None = None,
    realtime_files: bool = False,
    max_seconds: float | None = None,
) -> ServeReport:
    """Run every configured source until all have ended or failed, a stop signal, or `max_seconds`."""
    if not config.sources:
        raise ConfigError("no sources configured: add a 'sources:' list (see configs/cameras.yaml)")
    detector = detector or load_detector(config)
    ids = [spec.id for spec in config.sources]
    metrics = PipelineMetrics(ids, config.metrics.log_interval_s, config.metrics.port)
    keys = RedisKeys(config.redis.prefix)
    writer = _writer(config, keys, metrics)
    supervisor = DecoderSupervisor(config.sources, config.live, config.batching.batch, realtime_files)
    redis_sinks = {
        handle.spec.id: RedisSink(writer, handle.spec.id, detector.model_id, keys, config.redis.maxlen,
                                  handle.spec.uri, live=handle.live)
        for handle in supervisor.handles.values()
    } if writer else {}
    file_sinks = {
        source_id: FileSink(Path(config.output.dir) / source_id, detector.names, detector.model_id)
        for source_id in ids
    } if config.output.files else {}
    analytics = {
        spec.id: SourceAnalytics(spec.id, detector.names, config.tracking, config.events, spec.stride / 30.0)
        for spec in config.sources
    }
    report = ServeReport(metrics=metrics)
    started = time.monotonic()
    supervisor.start()
    try:
        with StopSignals() as stop:
            while not stop.requested.is_set():
                _report_states(supervisor, redis_sinks, metrics, analytics)
                if supervisor.finished or (max_seconds and time.monotonic() - started > max_seconds):
                    break
                batch = supervisor.next_batch(config.batching.batch, config.batching.max_wait_ms / 1000)
                if batch:
                    _process_batch(detector, supervisor, batch, analytics, redis_sinks, file_sinks, metrics)
                supervisor.watch()
                _update_counters(supervisor, redis_sinks, metrics)
                metrics.maybe_log()
    finally:
        supervisor.stop()
        for source_id, source_analytics in analytics.items():
            _write(source_id, [], source_analytics.finish(time.time()), redis_sinks, file_sinks)
        _report_states(supervisor, redis_sinks, metrics, analytics)
        _update_counters(supervisor, redis_sinks, metrics)
        for handle in supervisor.handles.values():
            report.frames[handle.spec.id] = metrics.sources[handle.spec.id].frames
            report.dropped[handle.spec.id] = handle.dropped
            report.reconnects[handle.spec.id] = handle.reconnects
            report.states[handle.spec.id] = handle.state
        for sink in file_sinks.values():
            sink.close()
        if writer is not None:
            report.redis_unwritten = writer.close(config.redis.timeout_s)
        report.seconds = time.monotonic() - started
    return report


def _writer(config: PipelineConfig, keys: RedisKeys, metrics: PipelineMetrics) -> RedisWriter | None:
    if not config.redis.url:
        log.warning("no Redis configured: results go to the file outputs only")
        return None
    frames_prefix = keys.frames("")

    def record_latency(commands: list[Command], written_at: float) -> None:
        for command in commands:
            if command[0] == "xadd" and command[1].startswith(frames_prefix) and command[5] is not None:
                metrics.latency(command[1][len(frames_prefix):], written_at - command[5])

    spill = Path(config.redis.spill_dir) / "serve.jsonl"
    return RedisWriter(config.redis.url, config.redis.timeout_s, config.redis.buffer_entries, spill,
                       on_written=record_latency)


def _process_batch(
    detector: EmotionDetector,
    supervisor: DecoderSupervisor,
    batch: list[tuple[SourceHandle, SlotFrame]],
    analytics: dict[str, SourceAnalytics],
    redis_sinks: dict[str, RedisSink],
    file_sinks: dict[str, FileSink],
    metrics: PipelineMetrics,
) -> None:
    try:
        found = detector.detect([slot_frame.frame.image for _handle, slot_frame in batch])
    finally:
        for handle, slot_frame in batch:
            supervisor.release(handle, slot_frame)
    by_source: dict[str, list[FrameResult]] = defaultdict(list)
    for (handle, slot_frame), faces in zip(batch, found):
        by_source[handle.spec.id].append(_result(slot_frame, faces))
    for source_id, results in by_source.items():
        tracked, events = analytics[source_id].process(results)
        _write(source_id, tracked, events, redis_sinks, file_sinks)
        metrics.processed(source_id, len(results))


def _write(source_id: str, results: list[FrameResult], events: list[FaceEvent], redis_sinks: dict[str, RedisSink],
           file_sinks: dict[str, FileSink]) -> None:
    if source_id in file_sinks:
        file_sinks[source_id].write(results)
        file_sinks[source_id].write_events(events)
    if source_id in redis_sinks:
        redis_sinks[source_id].write(results)
        redis_sinks[source_id].events(events)


def _result(slot_frame: SlotFrame, faces: list[Face]) -> FrameResult:
    """A result in the source's own pixels (undoing the downscale into shared memory)."""
    frame, scale = slot_frame.frame, slot_frame.scale
    height, width = frame.image.shape[:2]
    if scale != 1.0:
        faces = [dataclasses.replace(face, box=tuple(v / scale for v in face.box)) for face in faces]
        width, height = round(width / scale), round(height / scale)
    return FrameResult(frame.source_id, frame.index, frame.pts, frame.wall_time, width, height, faces)


def _report_states(
    supervisor: DecoderSupervisor,
    redis_sinks: dict[str, RedisSink],
    metrics: PipelineMetrics,
    analytics: dict[str, SourceAnalytics],
) -> None:
    for change in supervisor.statuses():
        metrics.state(change.source_id, change.state)
        fps = change.info.get("fps")
        if fps:
            handle = supervisor.handles[change.source_id]
            analytics[change.source_id].events.frame_interval_s = handle.spec.stride / fps
        if change.source_id in redis_sinks:
            redis_sinks[change.source_id].status(change.state, change.reason)


def _update_counters(supervisor: DecoderSupervisor, redis_sinks: dict[str, RedisSink], metrics: PipelineMetrics) -> None:
    for source_id, handle in supervisor.handles.items():
        metrics.set_dropped(source_id, handle.dropped)
        if source_id in redis_sinks:
            redis_sinks[source_id].dropped = handle.dropped
            redis_sinks[source_id].reconnects = handle.reconnects
