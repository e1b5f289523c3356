"""Per-source throughput, drops, reconnects and latency, and the engine's stages: a periodic line and Prometheus."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pipeline.core.errors import ConfigError
from pipeline.core.stage_times import Stage, StageTimes
from pipeline.core.states import SourceState

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATES = tuple(state.value for state in SourceState)


@dataclass
class SourceMetrics:
    """Counters of one source and a window of recent end-to-end latencies (seconds)."""

    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    state: str = "connecting"
    latencies: deque = field(default_factory=lambda: deque(maxlen=4096))
    window_frames: int = 0
    first_at: float | None = None
    last_at: float | None = None
    """Monotonic times of the first and the latest processed frame."""

    @property
    def fps(self) -> float:
        """Frames per second from the first processed frame to the latest."""
        span = (self.last_at or 0.0) - (self.first_at or 0.0)
        return self.frames / span if span > 0 else 0.0

    def percentiles(self) -> tuple[float, float, float] | None:
        """p50, p95, p99 latency in milliseconds over the window, or None without data."""
        if not self.latencies:
            return None
        p50, p95, p99 = np.percentile(np.fromiter(self.latencies, float), [50, 95, 99]) * 1000
        return float(p50), float(p95), float(p99)


class PipelineMetrics:
    """Thread-safe metrics of a serving run; `port` exposes them for Prometheus on `host` until `close`."""

    def __init__(self, source_ids: list[str], log_interval_s: float = 10.0, port: int | None = None,
                 stages: StageTimes | None = None, host: str = "127.0.0.1") -> None:
        """Raises ConfigError when the endpoint cannot listen on `host`:`port` (in use, not an address here)."""
        self.sources = {source_id: SourceMetrics() for source_id in source_ids}
        self.stages = stages
        self.log_interval_s = log_interval_s
        self._lock = threading.Lock()
        self._window_started = time.monotonic()
        self.registry = CollectorRegistry()
        self._frames = Counter("emotion_frames", "Frames processed", ["source"], registry=self.registry)
        self._dropped = Counter("emotion_dropped_frames", "Frames dropped to stay live", ["source"], registry=self.registry)
        self._reconnects = Counter("emotion_reconnects", "Source reconnects", ["source"], registry=self.registry)
        self._latency = Histogram(
            "emotion_latency_seconds", "Receive to Redis write", ["source"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self._state = Gauge("emotion_source_state", "1 for the source's current state", ["source", "state"],
                            registry=self.registry)
        self._stage_busy = Gauge("emotion_stage_busy_ratio", "Share of wall time an engine stage was busy "
                                 "(inference: the device's share, summed over devices)", ["stage"],
                                 registry=self.registry)
        self._stage_seconds = Gauge("emotion_stage_seconds_per_batch", "Mean seconds an engine stage spends on a batch",
                                    ["stage"], registry=self.registry)
        self._queue_depth = Gauge("emotion_queue_depth", "Batches waiting between engine stages", ["queue"],
                                  registry=self.registry)
        self._server = None
        if port:
            try:
                self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
            except (OSError, OverflowError) as exc:  # in use, no such address here, port out of range
                reason = getattr(exc, "strerror", None) or str(exc)
                raise ConfigError(f"cannot serve metrics on {host}:{port}: {reason}") from None
            log.info("metrics for Prometheus on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        """Stop the Prometheus endpoint, freeing its port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def processed(self, source_id: str, frames: int) -> None:
        """Count processed frames."""
        now = time.monotonic()
        with self._lock:
            metrics = self.sources[source_id]
            metrics.frames += frames
            metrics.window_frames += frames
            metrics.first_at = metrics.first_at or now
            metrics.last_at = now
        self._frames.labels(source_id).inc(frames)

    def set_dropped(self, source_id: str, dropped: int) -> None:
        """Record the source's cumulative drop count."""
        with self._lock:
            metrics = self.sources[source_id]
            increase, metrics.dropped = dropped - metrics.dropped, dropped
        if increase > 0:
            self._dropped.labels(source_id).inc(increase)

    def state(self, source_id: str, state: str) -> None:
        """Record a state change (a return to reconnecting counts as a reconnect)."""
        with self._lock:
            metrics = self.sources[source_id]
            if state == "reconnecting" and metrics.state == "live":
                metrics.reconnects += 1
                self._reconnects.labels(source_id).inc()
            metrics.state = state
        for name in STATES:
            self._state.labels(source_id, name).set(1.0 if name == state else 0.0)

    def latency(self, source_id: str, seconds: float) -> None:
        """Record one frame's end-to-end latency."""
        with self._lock:
            self.sources[source_id].latencies.append(seconds)
        self._latency.labels(source_id).observe(seconds)

    def maybe_log(self) -> None:
        """Log one compact line per interval: fps, drops, reconnects and latency of every source."""
        now = time.monotonic()
        if now - self._window_started < self.log_interval_s:
            return
        log.info(self.line(now - self._window_started))
        if self.stages is not None:
            log.info("engine: %s", self._stage_line())
        with self._lock:
            for metrics in self.sources.values():
                metrics.window_frames = 0
        self._window_started = now

    def _stage_line(self) -> str:
        """Busy share per stage and queue depths over the window; also sets the Prometheus gauges."""
        reports = self.stages.window()
        depths = self.stages.depths()
        for report in reports:
            self._stage_busy.labels(report.stage).set(report.busy_share)
            self._stage_seconds.labels(report.stage).set(report.seconds_per_batch)
        for name, depth in depths.items():
            self._queue_depth.labels(name).set(depth)
        stages = " ".join(
            f"{r.stage} {r.busy_share:.0%}" + (f" ({r.seconds_per_batch * 1000:.0f}ms/batch)"
                                              if r.stage == Stage.INFERENCE else "")
            for r in reports
        )
        return f"{stages} | queues " + " ".join(f"{name} {depth}" for name, depth in depths.items())

    def line(self, seconds: float) -> str:
        """`cam1 29.8fps drop 0 rc 0 p50/95/99 41/60/75ms | cam2 ...` over the last `seconds`."""
        parts = []
        with self._lock:
            for source_id, metrics in self.sources.items():
                latency = metrics.percentiles()
                text = "-" if latency is None else "/".join(f"{value:.0f}" for value in latency) + "ms"
                parts.append(
                    f"{source_id} {metrics.window_frames / max(seconds, 1e-6):.1f}fps drop {metrics.dropped} "
                    f"rc {metrics.reconnects} p50/95/99 {text} [{metrics.state}]"
                )
        return " | ".join(parts)
