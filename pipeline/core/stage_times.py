"""How busy each stage of the engine is and how full the queues between them are."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class Stage:
    """Names of the engine's stages, in the order a batch passes them."""

    INTAKE = "intake"
    """Waiting for frames to batch: busy here means the decoders or cameras are the limit."""
    PREPROCESS = "preprocess"
    INFERENCE = "inference"
    POST = "post"
    SINKS = "sinks"
    ALL = (INTAKE, PREPROCESS, INFERENCE, POST, SINKS)


@dataclass(frozen=True)
class StageReport:
    """One stage over a window: share of wall time it was busy, batches, mean seconds per batch."""

    stage: str
    busy_share: float
    batches: int
    seconds_per_batch: float


class StageTimes:
    """Thread-safe busy time per stage; `window()` reads and restarts the current window.

    With several devices the preprocess and inference figures sum over their lanes, so their
    busy share can exceed 1 (one per device at most).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = dict.fromkeys(Stage.ALL, 0.0)
        self._batches = dict.fromkeys(Stage.ALL, 0)
        self._total_busy = dict.fromkeys(Stage.ALL, 0.0)
        self._started = self._window_started = time.perf_counter()
        self.queues: dict[str, queue.Queue] = {}
        """Queues between stages by name, for their depths."""

    @contextmanager
    def busy(self, stage: str) -> Iterator[None]:
        """Count the time spent inside the block as `stage` working on one batch."""
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            with self._lock:
                self._busy[stage] += spent
                self._total_busy[stage] += spent
                self._batches[stage] += 1

    def depths(self) -> dict[str, int]:
        """Items waiting in each queue now."""
        return {name: q.qsize() for name, q in self.queues.items()}

    def window(self) -> list[StageReport]:
        """Stage figures since the last call (or the start), then a new window begins."""
        now = time.perf_counter()
        with self._lock:
            wall = max(now - self._window_started, 1e-9)
            reports = [
                StageReport(stage, self._busy[stage] / wall, self._batches[stage],
                            self._busy[stage] / self._batches[stage] if self._batches[stage] else 0.0)
                for stage in Stage.ALL
            ]
            self._busy = dict.fromkeys(Stage.ALL, 0.0)
            self._batches = dict.fromkeys(Stage.ALL, 0)
            self._window_started = now
        return reports

    def total_busy_share(self, stage: str) -> float:
        """Share of the wall time since the start that `stage` was busy."""
        with self._lock:
            return self._total_busy[stage] / max(time.perf_counter() - self._started, 1e-9)

    def overall(self) -> str:
        """`intake 3% preprocess 30% inference 85% post 9% sinks 7%`: busy shares since the start."""
        return " ".join(f"{stage} {self.total_busy_share(stage):.0%}" for stage in Stage.ALL)
