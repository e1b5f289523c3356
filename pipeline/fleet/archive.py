"""`process --cluster`: a recorded archive over the fleet's inference actors.

Every file is a unit of work. Each idle actor gets a call of up to `batching.open_files` units (its engine
batches across them); one progress bar counts the frames of the whole job. When an actor or its node is
lost, the units of its call go back to the queue and another actor runs them: the run record and the
deterministic entry ids in Redis make a retried unit resume where the lost one stopped, adding nothing
twice. A bad file fails alone (its report says why); SIGINT/SIGTERM stop every actor after the batches in
flight and the results so far are kept.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from pipeline.core.config import PipelineConfig
from pipeline.core.errors import ClusterError, ConfigError, EmotionStreamError, ModelError, SinkError
from pipeline.core.shutdown import StopSignals
from pipeline.core.source_ids import distinct_source_ids, output_folder
from pipeline.core.uris import video_path
from pipeline.faces.summary import TimelineSummary
from pipeline.files.process import ProgressCounts, RunReport
from pipeline.fleet.fleet_status import check_redis
from pipeline.fleet.ray_cluster import FleetActor, connect, lost, start_actors, user_error

log = logging.getLogger(__name__)

_POLL_S = 0.5


@dataclass(frozen=True)
class FileUnit:
    """One file of the job and the source id the job gave it."""

    path: Path
    source_id: str


@dataclass
class _Call:
    """Units an actor is running now."""

    actor: FleetActor
    units: list[FileUnit]


def process_on_cluster(config: PipelineConfig, videos: list[Path], address: str, replace: bool = False,
                       show_progress: bool = True, on_ready: Callable[[], None] | None = None) -> list[RunReport]:
    """Process `videos` on the Ray cluster at `address`; a report per file, in the order given. `on_ready` is
    called once every actor has loaded the model (benchmarks time what follows)."""
    given = [video_path(video) for video in videos]  # ids from the names given, as plain `process` derives them
    units = [FileUnit(path.resolve(), source_id) for path, source_id in zip(given, distinct_source_ids(given))]
    client = check_redis(config)  # refused credentials: one line, exit 5, before the cluster is joined
    if client is not None:
        client.close()
    ray = connect(address)
    actors = start_actors(ray, config, f"process-{uuid.uuid4().hex[:12]}")
    if on_ready is not None:
        on_ready()
    reports = _Driver(ray, config, actors, units, replace, show_progress).run()
    return [reports[unit.source_id] for unit in units]


def _share(total: int, parts: int) -> int:
    """Items per part when `total` items are spread over `parts` (at least one)."""
    return max(1, math.ceil(total / max(1, parts)))


class _Driver:
    """Hands units to idle actors, re-queues the units of lost ones, and keeps the one progress bar."""

    def __init__(self, ray: ModuleType, config: PipelineConfig, actors: list[FleetActor], units: list[FileUnit],
                 replace: bool, show_progress: bool) -> None:
        self.ray = ray
        self.config = config
        self.idle = deque(actors)
        self.alive = list(actors)
        self.pending = deque(units)
        self.units = units
        self.replace = replace
        self.alone: set[str] = set()
        """Source ids that run in a call of their own (Redis refused a call holding them)."""
        self.fatal: EmotionStreamError | None = None
        """A model or configuration error an actor raised: the job stops and raises it."""
        self.tried: set[str] = set()
        """Source ids handed out once: a retry never replaces what the first try wrote."""
        self.running: dict[Any, _Call] = {}
        self.reports: dict[str, RunReport] = {}
        self.counts: dict[int, ProgressCounts] = {}
        self.bar = tqdm(total=0, unit="frame", desc=f"{len(units)} files on {len(actors)} actors",
                        disable=not show_progress, dynamic_ncols=True)
        self.started = time.perf_counter()

    def run(self) -> dict[str, RunReport]:
        stopping = False
        with StopSignals() as stop:
            try:
                while self.running or (self.pending and not stopping):
                    if stop.requested.is_set() and not stopping:
                        stopping = True
                        self._stop_actors()
                    if not stopping:
                        self._hand_out()
                    if not self.alive and self.pending:
                        self.fatal = self.fatal or ClusterError("every inference actor was lost (see the log); "
                                                                "a re-run resumes the files not finished")
                        self._fail_pending(str(self.fatal))
                    ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=_POLL_S)
                    for ref in ready:
                        self._collect(ref)
                    self._show_progress()
            except KeyboardInterrupt:
                self._stop_actors()
                raise
            finally:
                self.bar.close()
        for unit in self.pending:  # stopped before their turn
            self.reports[unit.source_id] = self._unrun(unit, interrupted=True)
        if self.fatal is not None:
            raise self.fatal
        return self.reports

    def _hand_out(self) -> None:
        while self.pending and self.idle:
            actor = self.idle.popleft()
            count = min(self.config.batching.open_files, _share(len(self.pending), len(self.alive)))
            units = [self.pending.popleft()]
            while len(units) < count and self.pending and not {units[0].source_id,
                                                                 self.pending[0].source_id} & self.alone:
                units.append(self.pending.popleft())
            replace = self.replace and not any(unit.source_id in self.tried for unit in units)
            self.tried.update(unit.source_id for unit in units)
            ref = actor.handle.process.remote([unit.path for unit in units], [unit.source_id for unit in units],
                                              replace)
            self.running[ref] = _Call(actor, units)

    def _collect(self, ref: Any) -> None:
        call = self.running.pop(ref)
        try:
            results: list[RunReport] = self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - Ray wraps whatever the actor raised
            if lost(self.ray, exc):
                self._lose(call)
                return
            self.idle.append(call.actor)
            self._refused(call, user_error(exc))
            return
        for result in results:
            self.reports[result.source_id] = result
        self.idle.append(call.actor)

    def _refused(self, call: _Call, error: BaseException) -> None:
        """A call that raised before its files ran: Redis refused one of them (run each of its files alone, so
        only that one fails, exit 5), a model or configuration error (no file can run: the job stops and it is
        raised at the end, as on one machine), or a failure of the actor (its files fail with it)."""
        if isinstance(error, SinkError) and len(call.units) > 1:
            self.alone.update(unit.source_id for unit in call.units)
            self.pending.extendleft(reversed(call.units))
        elif isinstance(error, SinkError):
            self.reports[call.units[0].source_id] = self._unrun(call.units[0], redis_problem=str(error))
        elif isinstance(error, (ModelError, ConfigError)):
            self.fatal = self.fatal or error
            self._fail_pending(f"not run: {error}")
            for unit in call.units:
                self.reports[unit.source_id] = self._unrun(unit, source_problem=f"not run: {error}")
        else:
            for unit in call.units:
                self.reports[unit.source_id] = self._unrun(unit, source_problem=str(error))

    def _lose(self, call: _Call) -> None:
        """The actor of `call` is gone: its units go back to the front of the queue for the others."""
        self.alive = [actor for actor in self.alive if actor is not call.actor]
        self.idle = deque(actor for actor in self.idle if actor is not call.actor)
        self.pending.extendleft(reversed(call.units))
        log.warning("inference actor on %s lost; %d files go to the %d actors left: %s", call.actor.slot.node,
                    len(call.units), len(self.alive), ", ".join(unit.source_id for unit in call.units))

    def _stop_actors(self) -> None:
        for actor in self.alive:
            actor.handle.stop.remote()

    def _fail_pending(self, reason: str) -> None:
        while self.pending:
            unit = self.pending.popleft()
            self.reports[unit.source_id] = self._unrun(unit, source_problem=reason)

    def _show_progress(self) -> None:
        refs = {id(actor): actor.handle.progress_counts.remote() for actor in self.alive}
        ready, _ = self.ray.wait(list(refs.values()), num_returns=len(refs), timeout=_POLL_S)
        for key, ref in refs.items():
            if ref in ready:
                try:
                    self.counts[key] = self.ray.get(ref)
                except Exception:  # noqa: BLE001 - a lost actor's call says so itself; its last counts stay
                    continue
        self.bar.total = max(sum(counts.expected for counts in self.counts.values()), self.bar.n)
        self.bar.n = sum(counts.written for counts in self.counts.values())
        self.bar.set_postfix_str(f"{len(self.reports)}/{len(self.units)} files, {len(self.alive)} actors")

    def _unrun(self, unit: FileUnit, source_problem: str | None = None, redis_problem: str | None = None,
               interrupted: bool = False) -> RunReport:
        """The report of a unit that produced nothing."""
        return RunReport(unit.source_id, unit.path, output_folder(self.config.output.dir, unit.source_id),
                         TimelineSummary(), self.config.model.weights or "", "", time.perf_counter() - self.started,
                         interrupted=interrupted, source_problem=source_problem, redis_problem=redis_problem)
