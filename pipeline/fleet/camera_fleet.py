"""`serve --cluster`: cameras placed on the fleet's inference actors, watched, re-placed, drained.

The controller (the driver) puts each camera on an actor with room (`placement`), as a camera group the
actor serves with its own engine. It asks every actor for its cameras' counters once a second: an actor
whose call fails because it or its node is gone, or that has not answered for `fleet.lost_after_s`, is
taken as lost, killed for good, and its cameras go to the actors left; their new runs take over the
cameras' claims in Redis (same fleet job) and write their node into `emotion:sources`. SIGINT/SIGTERM
stop every actor: each finishes what is in flight and flushes Redis before the controller reports.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.core.config import PipelineConfig, SourceSpec
from pipeline.core.errors import ConfigError
from pipeline.core.metrics import PipelineMetrics
from pipeline.core.shutdown import StopSignals
from pipeline.core.states import SourceState
from pipeline.core.uris import is_live
from pipeline.fleet.fleet_status import FINAL_STATES, CameraStatuses
from pipeline.fleet.inference_actor import CameraStats
from pipeline.fleet.placement import place_cameras
from pipeline.fleet.ray_cluster import FleetActor, connect, lost, start_actors, user_error
from pipeline.live.serve import ServeReport

log = logging.getLogger(__name__)

_TICK_S = 0.2
_PING_EVERY_S = 1.0
_DRAIN_S = 60.0


@dataclass(frozen=True)
class CameraMove:
    """Cameras that went from a lost actor to another, and why the actor was taken as lost."""

    cameras: tuple[str, ...]
    from_node: str
    to_node: str
    reason: str

    def describe(self) -> str:
        """E.g. `cam2: moved from 10.0.0.5/1a2b3c4d to 10.0.0.6/5e6f7a8b (it did not answer for 5s)`."""
        return f"{', '.join(self.cameras)}: moved from {self.from_node} to {self.to_node} ({self.reason})"


@dataclass
class FleetServeReport:
    """How a fleet's serving run ended: the cameras' outcomes over all their runs, and the moves."""

    serve: ServeReport = field(default_factory=ServeReport)
    moves: list[CameraMove] = field(default_factory=list)


@dataclass(frozen=True)
class _Ping:
    """A counters request in flight to an actor, and when it was sent."""

    ref: Any
    sent: float


@dataclass
class _Group:
    """Cameras one actor serves in one `serve` call."""

    actor: int
    cameras: list[SourceSpec]


def serve_on_cluster(config: PipelineConfig, address: str, max_seconds: float | None = None,
                     realtime_files: bool = False) -> FleetServeReport:
    """Serve the configured cameras on the Ray cluster at `address` until they end, a stop signal, or
    `max_seconds` (file sources paced at their frame rate with `realtime_files`, as in `bench --streams`)."""
    if not config.sources:
        raise ConfigError("no sources configured: add a 'sources:' list (see configs/cameras.yaml)")
    config = dataclasses.replace(config, sources=[_absolute(spec) for spec in config.sources])
    statuses = CameraStatuses.check(config)  # refused credentials or the wrong kind of Redis: exit 5 before Ray starts
    metrics = PipelineMetrics([spec.id for spec in config.sources], config.metrics.log_interval_s,
                              config.metrics.port, host=config.metrics.host)  # a busy port fails before Ray starts
    try:
        ray = connect(address)
        job = f"serve-{uuid.uuid4().hex[:12]}"
        actors = start_actors(ray, config, job)
        job_statuses = statuses.for_job(job) if statuses is not None else None
        return _Controller(ray, config, actors, realtime_files, metrics, job_statuses).run(max_seconds)
    finally:
        metrics.close()


def _absolute(spec: SourceSpec) -> SourceSpec:
    """A file source with its path made absolute (actors resolve paths elsewhere); others as they are."""
    if is_live(spec.uri) or "://" in spec.uri:
        return spec
    return dataclasses.replace(spec, uri=str(Path(spec.uri).resolve()))


class _Controller:
    """Places camera groups, watches the actors, re-places the groups of lost ones, gathers counters."""

    def __init__(self, ray: ModuleType, config: PipelineConfig, actors: list[FleetActor], realtime_files: bool,
                 metrics: PipelineMetrics, statuses: CameraStatuses | None) -> None:
        self.ray = ray
        self.realtime_files = realtime_files
        self.config = config
        self.actors = actors
        self.alive = set(range(len(actors)))
        self.groups: dict[Any, _Group] = {}
        self.stats: dict[str, CameraStats] = {}
        """Each camera's counters in its current run, as its actor last reported them (and `metrics` counted)."""
        self.metrics = metrics
        """The fleet's metrics: log lines and the Prometheus endpoint of the controller, over every actor."""
        self.statuses = statuses
        self.pings: dict[int, _Ping] = {}
        self.answered = dict.fromkeys(self.alive, time.monotonic())
        self.report = FleetServeReport()
        self.stopping = False
        self.stop_at = 0.0

    def run(self, max_seconds: float | None) -> FleetServeReport:
        """Place every camera, then watch until every group has ended (or a stop, or `max_seconds`)."""
        started = time.monotonic()
        self._place(list(self.config.sources), None, "")
        with StopSignals() as stop:
            while self.groups:
                overtime = max_seconds is not None and time.monotonic() - started > max_seconds
                if (stop.requested.is_set() or overtime) and not self.stopping:
                    self._drain()
                ready, _ = self.ray.wait(list(self.groups), num_returns=len(self.groups), timeout=_TICK_S)
                for ref in ready:
                    if ref in self.groups:
                        self._collect(ref)
                if not self.stopping:
                    self._watch()
                    self.metrics.maybe_log()
                elif time.monotonic() - self.stop_at > _DRAIN_S:
                    self._give_up_draining()
        self.report.serve.seconds = time.monotonic() - started
        return self.report

    def _place(self, cameras: list[SourceSpec], lost_node: str | None, reason: str) -> None:
        load = {index: 0 for index in self.alive}
        for group in self.groups.values():
            load[group.actor] += len(group.cameras)
        placement = place_cameras(cameras, load, self.config.fleet.cameras_per_actor)
        for index, group_cameras in placement.assigned.items():
            actor = self.actors[index]
            self.groups[actor.handle.serve.remote(group_cameras, self.realtime_files)] = _Group(index, group_cameras)
            log.info("cameras %s on %s", ", ".join(spec.id for spec in group_cameras), actor.slot.node)
            if lost_node is not None:
                move = CameraMove(tuple(spec.id for spec in group_cameras), lost_node, actor.slot.node, reason)
                self.report.moves.append(move)
                log.warning("%s", move.describe())
        for camera in placement.unplaced:
            reason = (f"no inference actor had room for it (fleet.cameras_per_actor: "
                      f"{self.config.fleet.cameras_per_actor}, {len(self.alive)} actors)")
            log.error("%s: %s", camera.id, reason)
            self._record_failure(camera.id, reason)
            if self.statuses is not None:
                self.statuses.failed(camera, reason, self.report.serve.frames[camera.id])

    def _collect(self, ref: Any) -> None:
        group = self.groups.pop(ref)
        try:
            result: ServeReport = self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - Ray wraps whatever the actor raised
            if lost(self.ray, exc) and group.actor in self.alive:
                self.groups[ref] = group  # _lose moves every group of the actor, this one included
                self._lose(group.actor, "its process or node is gone")
                return
            for camera in group.cameras:
                self._record_failure(camera.id, str(user_error(exc)))
            return
        for camera_id, state in result.states.items():  # the run's last counts, beyond what was reported so far
            self._count({camera_id: CameraStats(state, result.frames[camera_id], result.dropped[camera_id])})
            self.stats.pop(camera_id, None)
        _merge(self.report.serve, result, self.actors[group.actor].slot.node)

    def _watch(self) -> None:
        """Ask every alive actor for its counters once a second; one silent for `lost_after_s` is lost."""
        now = time.monotonic()
        for index in sorted(self.alive):
            ping = self.pings.get(index)
            if ping is None:
                if now - self.answered[index] >= _PING_EVERY_S:
                    self.pings[index] = _Ping(self.actors[index].handle.camera_stats.remote(), now)
                continue
            ready, _ = self.ray.wait([ping.ref], timeout=0)
            if ready:
                del self.pings[index]
                try:
                    self._count(self.ray.get(ping.ref))
                    self.answered[index] = now
                except Exception as exc:  # noqa: BLE001 - a lost actor, or one that cannot report
                    if lost(self.ray, exc):
                        self._lose(index, "its process or node is gone")
                    else:
                        log.warning("inference actor on %s did not report its counters: %s",
                                    self.actors[index].slot.node, user_error(exc))
            elif now - ping.sent > self.config.fleet.lost_after_s:
                self._lose(index, f"it did not answer for {self.config.fleet.lost_after_s:g}s")

    def _lose(self, index: int, reason: str) -> None:
        """Kill actor `index` for good and move its camera groups to the actors left."""
        self.alive.discard(index)
        self.pings.pop(index, None)
        actor = self.actors[index]
        self.ray.kill(actor.handle, no_restart=True)
        moved = [ref for ref, group in self.groups.items() if group.actor == index]
        cameras = []
        for camera in [camera for ref in moved for camera in self.groups.pop(ref).cameras]:
            written = self.statuses.final_status(camera.id, actor.slot.node) if self.statuses is not None else None
            if written is not None:  # it ended or failed there after the last counters came: Redis has the rest
                self._count({camera.id: CameraStats(written["state"], written.get("frames", 0),
                                                    written.get("dropped", 0))})
            last = self.stats.pop(camera.id, None)  # counted until the loss; a new run counts from zero
            if last is not None:
                serve = self.report.serve
                serve.frames[camera.id] = serve.frames.get(camera.id, 0) + last.frames
                serve.dropped[camera.id] = serve.dropped.get(camera.id, 0) + last.dropped
            if last is not None and last.state in FINAL_STATES:  # it had ended or failed: nothing to move
                self.report.serve.states[camera.id] = last.state
                self.report.serve.reconnects.setdefault(camera.id, 0)
            else:
                cameras.append(camera)
        log.warning("inference actor on %s lost (%s); %d actors left", actor.slot.node, reason, len(self.alive))
        if self.stopping:  # draining: nothing moves any more
            for camera in cameras:
                self._record_failure(camera.id, f"its actor on {actor.slot.node} was lost while stopping ({reason})")
        elif cameras:
            self._place(cameras, actor.slot.node, reason)

    def _drain(self) -> None:
        self.stopping = True
        self.stop_at = time.monotonic()
        log.info("stopping: every actor finishes what is in flight and flushes Redis")
        for index in self.alive:
            self.actors[index].handle.stop.remote()

    def _give_up_draining(self) -> None:
        for ref, group in list(self.groups.items()):
            for camera in group.cameras:
                self._record_failure(camera.id, f"its actor on {self.actors[group.actor].slot.node} did not stop "
                                                f"within {_DRAIN_S:g}s")
            del self.groups[ref]

    def _record_failure(self, camera_id: str, reason: str) -> None:
        self.metrics.state(camera_id, SourceState.FAILED.value)
        serve = self.report.serve
        serve.states[camera_id] = SourceState.FAILED.value
        serve.failures[camera_id] = reason
        for counter in (serve.frames, serve.dropped, serve.reconnects):
            counter.setdefault(camera_id, 0)

    def _count(self, reported: dict[str, CameraStats]) -> None:
        """Take an actor's counters into the fleet's metrics (a moved camera's new run counts from zero)."""
        for camera_id, stats in reported.items():
            before = self.stats.get(camera_id)
            fresh = before is None or stats.frames < before.frames
            frames = stats.frames - (0 if fresh else before.frames)
            dropped = stats.dropped - (0 if fresh else before.dropped)
            if frames:
                self.metrics.processed(camera_id, frames)
            self.metrics.set_dropped(camera_id, self.metrics.sources[camera_id].dropped + dropped)
            self.metrics.state(camera_id, stats.state)
            self.stats[camera_id] = stats


def _merge(into: ServeReport, result: ServeReport, actor: str) -> None:
    """Add one camera group's outcome (run on `actor`) to the fleet's (a moved camera's counters add up over its
    runs)."""
    for camera_id, state in result.states.items():
        into.states[camera_id] = state
        for total, part in ((into.frames, result.frames), (into.dropped, result.dropped),
                            (into.reconnects, result.reconnects)):
            total[camera_id] = total.get(camera_id, 0) + part.get(camera_id, 0)
        if camera_id in result.failures:
            into.failures[camera_id] = result.failures[camera_id]
        else:
            into.failures.pop(camera_id, None)
    into.redis_unwritten += result.redis_unwritten
    into.redis_rejected += result.redis_rejected
    into.redis_written.update(result.redis_written)
    into.redis_duplicates.update(result.redis_duplicates)
    if result.stages:
        group = ",".join(result.states)
        into.stages = "; ".join(part for part in (into.stages, f"{group} on {actor}: {result.stages}") if part)
