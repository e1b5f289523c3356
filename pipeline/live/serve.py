"""`emotion-stream serve`: many live sources through the staged engine into Redis, for weeks.

Decoder processes (`supervisor`) feed shared memory, `LiveFeed` makes fair batches with
each source's status changes in order, the `Watchdog` restarts stalled decoders on its own
thread, and the engine (`engine.stages`) overlaps preprocessing, inference, tracking and
writing. This module wires them, logs metrics, and on SIGINT/SIGTERM stops the decoders,
lets the engine finish what is in flight and flushes the sinks. Each source id is claimed in
Redis first (see `source_claims`); one that another run is writing, or whose data belongs to
a `process` run or to nothing serve wrote, fails alone and the others are served.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from pipeline.core.config import PipelineConfig, SourceSpec
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import ConfigError, SinkError
from pipeline.core.fleet_member import FleetMember
from pipeline.core.metrics import PipelineMetrics
from pipeline.core.shutdown import StopSignals
from pipeline.core.source_ids import output_folder
from pipeline.core.stage_times import StageTimes
from pipeline.core.states import SourceState
from pipeline.core.uris import mask_uri
from pipeline.engine.detector import EmotionDetector
from pipeline.engine.loading import load_detectors
from pipeline.engine.stages import LANE_BATCHES, Engine
from pipeline.faces.analytics import SourceAnalytics
from pipeline.live.feed import LiveFeed
from pipeline.live.supervisor import DecoderSupervisor
from pipeline.live.watchdog import Watchdog
from pipeline.sinks.files import FileSink
from pipeline.sinks.redis_replies import describe
from pipeline.sinks.redis_resume import check_live_source
from pipeline.sinks.redis_sink import RedisSink, RedisUnreachable, connect
from pipeline.sinks.redis_writer import Command, RedisWriter
from pipeline.sinks.source_claims import SourceClaims, claim_ttl_s
from pipeline.sinks.source_output import SourceOutput

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
    """Commands Redis did not take before the end (kept in the spill file for the next run)."""
    redis_rejected: int = 0
    """Commands Redis rejected for good (kept in the rejected file beside the spill file)."""
    redis_written: Counter[str] = field(default_factory=Counter)
    """Frame entries Redis took, per source."""
    redis_duplicates: Counter[str] = field(default_factory=Counter)
    """Frame entries Redis dropped because it held entries with their ids already, per source."""
    failures: dict[str, str] = field(default_factory=dict)
    """Sources failed downstream (tracker or sink), with the reason."""
    metrics: PipelineMetrics | None = None
    stages: str = ""
    """Busy share of each engine stage over the run."""

    @property
    def all_failed(self) -> bool:
        """True when every source failed (nothing was served)."""
        return bool(self.states) and all(state == SourceState.FAILED.value for state in self.states.values())


def serve(
    config: PipelineConfig,
    detectors: list[EmotionDetector] | None = None,
    realtime_files: bool = False,
    max_seconds: float | None = None,
    stop: threading.Event | None = None,
    member: FleetMember | None = None,
    on_start: Callable[[PipelineMetrics], None] | None = None,
) -> ServeReport:
    """Run every configured source until all have ended or failed, a stop signal (or `stop` is set), or
    `max_seconds`. A fleet `member` takes over its job's claims and names its node in each source's status;
    `on_start` receives the run's metrics once its sources are about to start."""
    if not config.sources:
        raise ConfigError("no sources configured: add a 'sources:' list (see configs/cameras.yaml)")
    claims, refused = _claim_sources(config, member)
    try:
        report = _serve_claimed(config, refused, detectors, realtime_files, max_seconds,
                                _Hooks(stop or threading.Event(), member, on_start))
    finally:
        if claims is not None:
            claims.release()
    for source_id, holder in (claims.lost if claims is not None else {}).items():
        report.failures.setdefault(source_id, f"{holder} took its claim while Redis was unreachable; its entries "
                                              "may be mixed with that run's")
    return report


@dataclass(frozen=True)
class _Hooks:
    """How a fleet actor steers a serve run: its stop event, its place in the fleet, its metrics hook."""

    stop: threading.Event
    member: FleetMember | None
    on_start: Callable[[PipelineMetrics], None] | None


def _serve_claimed(config: PipelineConfig, refused: dict[str, str], detectors: list[EmotionDetector] | None,
                   realtime_files: bool, max_seconds: float | None, hooks: _Hooks) -> ServeReport:
    """Serve the sources whose ids were not `refused` (those are reported failed, with the reason)."""
    report = ServeReport(states={source_id: SourceState.FAILED.value for source_id in refused}, failures=refused,
                         frames=dict.fromkeys(refused, 0), dropped=dict.fromkeys(refused, 0),
                         reconnects=dict.fromkeys(refused, 0))
    served = [spec for spec in config.sources if spec.id not in refused]
    if not served:
        return report
    times = StageTimes()
    metrics = PipelineMetrics([spec.id for spec in served], config.metrics.log_interval_s,
                              config.metrics.port, times, config.metrics.host)  # a busy port fails before the model loads
    try:
        detectors = detectors or load_detectors(config.model, config.batching.batch)
    except BaseException:
        metrics.close()
        raise
    writer = _writer(config, RedisKeys.of(config.redis), metrics,
                     [spec.id for spec in config.sources if spec.id not in refused])
    supervisor = DecoderSupervisor(served, config.live, config.batching.batch, realtime_files,
                                   in_flight_batches=LANE_BATCHES * len(detectors))
    node = hooks.member.node if hooks.member else None
    outputs = {
        handle.spec.id: _output(config, handle.spec, handle.live, detectors[0], writer, metrics, node)
        for handle in supervisor.handles.values()
    }
    feed = LiveFeed(supervisor, config.batching.max_wait_ms / 1000)
    watchdog = Watchdog(supervisor)
    engine = Engine(detectors, feed, outputs, config.batching.batch, times, on_written=metrics.processed)
    report.metrics = metrics
    if hooks.on_start is not None:
        hooks.on_start(metrics)
    started = time.monotonic()
    stopping = False

    def tick() -> None:
        nonlocal stopping
        _update_counters(supervisor, outputs, metrics)
        metrics.maybe_log()
        asked = stop.requested.is_set() or hooks.stop.is_set()
        if not stopping and (asked or (max_seconds and time.monotonic() - started > max_seconds)):
            stopping = True
            watchdog.stop()
            supervisor.stop()  # open sources end; the engine finishes what is in flight, then the feed is done

    with StopSignals() as stop:
        try:
            supervisor.start()
            watchdog.start()
            engine.start()
            engine.wait(tick, interval_s=0.2)
        finally:
            engine.abort()  # only matters when wait() raised: the stages stop before shared memory goes
            engine.join()
            _close(supervisor, watchdog, outputs, metrics, writer, report, config, engine.error)
            report.seconds = time.monotonic() - started
            report.stages = times.overall()
    return report


def _close(supervisor: DecoderSupervisor, watchdog: Watchdog, outputs: dict[str, SourceOutput],
           metrics: PipelineMetrics, writer: RedisWriter | None, report: ServeReport, config: PipelineConfig,
           error: BaseException | None) -> None:
    """Stop decoders, record every source's outcome, flush Redis (an engine error fails the open sources)."""
    watchdog.stop()
    supervisor.stop()
    supervisor.close()
    _update_counters(supervisor, outputs, metrics)
    for source_id, handle in supervisor.handles.items():
        output = outputs[source_id]
        if error is not None and not output.state.final:
            output.fail(f"inference stopped: {error}")
        try:
            output.close()
        except OSError as exc:  # a full disk fails this source's files, not the others' report
            output.fail(f"cannot close its outputs: {exc}")
        report.frames[source_id] = metrics.sources[source_id].frames
        report.dropped[source_id] = handle.dropped
        report.reconnects[source_id] = handle.reconnects
        report.states[source_id] = output.state.value
        if output.failure:
            report.failures[source_id] = output.failure
    if writer is not None:
        report.redis_unwritten = writer.close(config.redis.timeout_s)
        report.redis_rejected = sum(writer.rejected.values())
        keys = RedisKeys.of(config.redis)
        for source_id in supervisor.handles:
            report.redis_written[source_id] = writer.written[keys.frames(source_id)]
            report.redis_duplicates[source_id] = writer.duplicates[keys.frames(source_id)]
    metrics.close()


def _output(config: PipelineConfig, spec: SourceSpec, live: bool, detector: EmotionDetector,
            writer: RedisWriter | None, metrics: PipelineMetrics, node: str | None) -> SourceOutput:
    analytics = SourceAnalytics(spec.id, detector.names, config.tracking, config.events, spec.stride / 30.0)
    keys = RedisKeys.of(config.redis)
    files = (FileSink(output_folder(config.output.dir, spec.id), detector.names, detector.model_id, keys.schema)
             if config.output.files else None)
    redis_sink = None
    if writer is not None:
        redis_sink = RedisSink(writer, spec.id, detector.model_id, keys, config.redis.maxlen, spec.uri, live=live,
                               node=node)
    return SourceOutput(spec.id, detector.names, analytics, files, redis_sink,
                        on_status=lambda change: metrics.state(change.source_id, change.state.value), live=live)


def _claim_sources(config: PipelineConfig, member: FleetMember | None) -> tuple[SourceClaims | None, dict[str, str]]:
    """Claim and check every source's id; the claims (renewed until released) and the refused ids with
    the reason. A malformed Redis URL (ConfigError) or refused credentials (SinkError) stop serve before
    it starts; an outage does not: results wait (memory, then disk) until Redis answers, unclaimed."""
    if not config.redis.url:
        return None, {}
    try:
        client = connect(config.redis.url, config.redis.timeout_s, config.redis.cluster)
    except RedisUnreachable as exc:
        log.warning("%s; serving anyway (the source ids are not claimed), results wait (memory, then disk) "
                    "until it answers", exc)
        return None, {}
    keys = RedisKeys.of(config.redis)
    claims = SourceClaims(client, keys, "serve", claim_ttl_s(config.redis.timeout_s), member.job if member else "")
    refused: dict[str, str] = {}
    try:
        for spec in config.sources:
            try:
                claims.claim(spec.id)
                check_live_source(client, keys, spec.id)
            except SinkError as exc:
                claims.drop(spec.id)
                refused[spec.id] = str(exc)
                log.error("%s", exc)
    except redis.RedisError as exc:
        claims.release()
        raise SinkError(f"Redis at {mask_uri(config.redis.url)} failed the checks before serving: "
                        f"{describe(exc) if isinstance(exc, redis.ResponseError) else exc}") from None
    claims.keep()
    return claims, refused


def _writer(config: PipelineConfig, keys: RedisKeys, metrics: PipelineMetrics,
            written_ids: list[str]) -> RedisWriter | None:
    """The serve run's writer. Its spill file is named after the ids it writes (`written_ids`), so what
    an earlier run left is replayed only by a run that writes (and so claimed and checked) the same ids;
    spill files of other id sets wait, named in one log line."""
    if not config.redis.url:
        log.warning("no Redis configured: results go to the file outputs only")
        return None

    def record_latency(commands: list[Command], written_at: float) -> None:
        for command in commands:
            if command[0] == "xadd" and command[5] is not None:  # frame entries carry their wall time
                source_id = keys.source_of(command[1])
                if command[1] == keys.frames(source_id) and source_id in metrics.sources:
                    metrics.latency(source_id, written_at - command[5])

    ids_hash = hashlib.sha256("\n".join(sorted(written_ids)).encode()).hexdigest()[:12]
    spill = Path(config.redis.spill_dir) / f"serve-{ids_hash}.jsonl"
    others = sorted(path.name for path in spill.parent.glob("serve-*.jsonl")
                    if path != spill and not path.name.endswith("-rejected.jsonl"))
    if others:
        log.warning("spill files of serve runs with other sources wait in %s (%s): a serve of those same "
                    "sources writes them", spill.parent, ", ".join(others))
    return RedisWriter(config.redis.url, config.redis.timeout_s, config.redis.buffer_entries, spill,
                       on_written=record_latency, cluster=config.redis.cluster)


def _update_counters(supervisor: DecoderSupervisor, outputs: dict[str, SourceOutput], metrics: PipelineMetrics) -> None:
    for source_id, handle in supervisor.handles.items():
        metrics.set_dropped(source_id, handle.dropped)
        redis_sink = outputs[source_id].redis
        if redis_sink is not None:
            redis_sink.dropped = handle.dropped
            redis_sink.reconnects = handle.reconnects
