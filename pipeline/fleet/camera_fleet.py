"""`serve --cluster`: cameras placed on the fleet's inference actors, watched, re-placed, drained.

The controller (the driver) puts each camera on an actor with room (`placement`), as a camera group the
actor serves with its own engine. It asks every actor for its cameras' counters once a second: an actor
whose call fails because it or its node is gone, or that has not answered for `fleet.lost_after_s`, is
taken as lost, killed for good, and its cameras go to the actors left; their new runs take over the
cameras' claims in Redis (same fleet job) and write their node into `emotion:sources`. SIGINT/SIGTERM
stop every actor: each finishes what is in flight and flushes Redis before the controller reports.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pipeline.core.config import PipelineConfig, SourceSpec
from pipeline.core.errors import ConfigError
from pipeline.core.metrics import PipelineMetrics
from pipeline.core.shutdown import StopSignals
from pipeline.core.states import SourceState
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
    """Cameras that went from a lost actor to another, and how long after the loss was seen."""

    cameras: tuple[str, ...]
    from_node: str
    to_node: str
    reason: str

    def describe(self) -> str:
        return f"{', '.join(self.cameras)}: moved from {self.from_node} to {self.to_node} ({self.reason})"


@dataclass
class FleetServeReport:
    """How a fleet's serving run ended: the cameras' outcomes over all their runs, and the moves."""

    serve: ServeReport = field(default_factory=ServeReport)
    moves: list[CameraMove] = field(default_factory=list)
    actors: int = 0


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
    metrics = PipelineMetrics([spec.id for spec in config.sources], config.metrics.log_interval_s,
                              config.metrics.port, host=config.metrics.host)  # a busy port fails before Ray starts
    try:
        ray = connect(address)
        actors = start_actors(ray, config, f"serve-{uuid.uuid4().hex[:12]}")
        return _Controller(ray, config, actors, realtime_files, metrics).run(max_seconds)
    finally:
        metrics.close()


class _Controller:
    """Places camera groups, watches the actors, re-places the groups of lost ones, gathers counters."""

    def __init__(self, ray: ModuleType, config: PipelineConfig, actors: list[FleetActor], realtime_files: bool,
                 metrics: PipelineMetrics) -> None:
        self.ray = ray
        self.realtime_files = realtime_files
        self.config = config
        self.actors = actors
        self.alive = set(range(len(actors)))
        self.groups: dict[Any, _Group] = {}
        self.stats: dict[str, CameraStats] = {}
        """Each camera's counters in its current run, as its actor last reported them."""
        self.metrics = metrics
        """The fleet's metrics: log lines and the Prometheus endpoint of the controller, over every actor."""
        self.counted: dict[str, CameraStats] = {}
        """What `metrics` has been told of each camera's current run."""
        self.pings: dict[int, tuple[Any, float]] = {}
        self.answered = dict.fromkeys(self.alive, time.monotonic())
        self.report = FleetServeReport(actors=len(actors))
        self.unplaced: list[SourceSpec] = []
        self.stopping = False
        self.stop_at = 0.0

    def run(self, max_seconds: float | None) -> FleetServeReport:
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
        for camera in self.unplaced:
            self._record_failure(camera.id, "no inference actor had room for it (fleet.cameras_per_actor: "
                                            f"{self.config.fleet.cameras_per_actor}, {len(self.alive)} actors)")
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
        if placement.unplaced:
            log.error("no inference actor has room for %s (fleet.cameras_per_actor: %s)",
                      ", ".join(spec.id for spec in placement.unplaced), self.config.fleet.cameras_per_actor)
        self.unplaced += placement.unplaced

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
        _merge(self.report.serve, result)

    def _watch(self) -> None:
        """Ask every alive actor for its counters once a second; one silent for `lost_after_s` is lost."""
        now = time.monotonic()
        for index in sorted(self.alive):
            pending = self.pings.get(index)
            if pending is None:
                if now - self.answered[index] >= _PING_EVERY_S:
                    self.pings[index] = (self.actors[index].handle.camera_stats.remote(), now)
                continue
            ref, sent = pending
            ready, _ = self.ray.wait([ref], timeout=0)
            if ready:
                del self.pings[index]
                try:
                    self._count(self.ray.get(ref))
                    self.answered[index] = now
                except Exception as exc:  # noqa: BLE001 - a lost actor, or one that cannot report
                    if lost(self.ray, exc):
                        self._lose(index, "its process or node is gone")
            elif now - sent > self.config.fleet.lost_after_s:
                self._lose(index, f"it did not answer for {self.config.fleet.lost_after_s:g}s")

    def _lose(self, index: int, reason: str) -> None:
        """Kill actor `index` for good and move its camera groups to the actors left."""
        self.alive.discard(index)
        self.pings.pop(index, None)
        actor = self.actors[index]
        self.ray.kill(actor.handle, no_restart=True)
        moved = [ref for ref, group in self.groups.items() if group.actor == index]
        cameras = [camera for ref in moved for camera in self.groups.pop(ref).cameras]
        for camera in cameras:  # counted until the loss; the new run counts from zero
            self.counted.pop(camera.id, None)
            if camera.id in self.stats:
                self.report.serve.frames[camera.id] = self.report.serve.frames.get(camera.id, 0) + \
                    self.stats.pop(camera.id).frames
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
        serve = self.report.serve
        serve.states[camera_id] = SourceState.FAILED.value
        serve.failures[camera_id] = reason
        for counter in (serve.frames, serve.dropped, serve.reconnects):
            counter.setdefault(camera_id, 0)

    def _count(self, reported: dict[str, CameraStats]) -> None:
        """Take an actor's counters into the fleet's metrics (a moved camera's new run counts from zero)."""
        for camera_id, stats in reported.items():
            before = self.counted.get(camera_id)
            fresh = before is None or stats.frames < before.frames
            frames = stats.frames - (0 if fresh else before.frames)
            dropped = stats.dropped - (0 if fresh else before.dropped)
            if frames:
                self.metrics.processed(camera_id, frames)
            self.metrics.set_dropped(camera_id, self.metrics.sources[camera_id].dropped + dropped)
            self.metrics.state(camera_id, stats.state)
            self.counted[camera_id] = stats
        self.stats.update(reported)


def _merge(into: ServeReport, result: ServeReport) -> None:
    """Add one camera group's outcome to the fleet's (a moved camera's counters add up over its runs)."""
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
    into.stages = "; ".join(part for part in (into.stages, result.stages) if part)
