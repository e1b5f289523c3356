"""Graceful stop: SIGINT and SIGTERM end a run between batches, never in the middle of a write."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopSignals:
    """While active, SIGINT/SIGTERM set `requested` instead of raising; handlers are restored on exit.

    Outside the main thread (where Python cannot install handlers) it only offers `request()`.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: dict[int, object] = {}

    def request(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Ask the run to stop after the batch in flight."""
        self.requested.set()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self.request)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
