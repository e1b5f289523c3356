"""Restarts stalled or crashed decoders on its own thread, so a restart never pauses inference."""

from __future__ import annotations

import logging
import threading
import time

from pipeline.core.states import SourceState
from pipeline.live.decoder_process import backoff_delay
from pipeline.live.source_handle import SourceHandle
from pipeline.live.supervisor import DecoderSupervisor

log = logging.getLogger(__name__)

_EXIT_GRACE_S = 1.0


class Watchdog:
    """Every `interval_s`, restarts the decoder of each open source that stalled or exited, with backoff."""

    def __init__(self, supervisor: DecoderSupervisor, interval_s: float = 0.25) -> None:
        self.supervisor = supervisor
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decoder-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the supervisor stops the decoders)."""
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for handle in self.supervisor.handles.values():
                if not self._stop.is_set():
                    self.check(handle)

    def check(self, handle: SourceHandle) -> None:
        """Restart `handle`'s decoder if it is due, stalled or gone."""
        live = self.supervisor.live
        now = time.monotonic()
        if handle.failure and handle.process is not None:
            self.supervisor.terminate(handle)  # failed downstream: its frames are not wanted
        with self.supervisor.ready:
            if handle.state.final or handle.failure:
                return
            restart_due = handle.restart_at is not None and now >= handle.restart_at
            waiting = handle.restart_at is not None and not restart_due
            alive = handle.process is not None and handle.process.is_alive()
            if not alive and not waiting and not restart_due:
                # its last messages (e.g. `ended`) may still be on their way: give the collector a moment
                handle.exited_at = handle.exited_at or now
                alive = now - handle.exited_at < _EXIT_GRACE_S
            stalled = handle.live and handle.state is SourceState.LIVE and now - handle.last_frame_at > live.stall_timeout_s
        if waiting:
            return
        if restart_due:
            handle.restart_at = None
            self.supervisor.spawn(handle)
            return
        if alive and not stalled:
            return
        reason = f"no frame for {now - handle.last_frame_at:.0f}s" if stalled else "decoder process exited"
        log.warning("%s: %s; restarting its decoder", handle.spec.id, reason)
        self.supervisor.terminate(handle)
        with self.supervisor.ready:
            handle.restarts += 1
            handle.transition(SourceState.RECONNECTING, reason)
            handle.restart_at = now + backoff_delay(handle.restarts, live.backoff_initial_s, live.backoff_max_s)
            self.supervisor.ready.notify_all()
