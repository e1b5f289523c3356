"""Restarts stalled or crashed decoders on its own thread, so a restart never pauses inference."""

from __future__ import annotations

import logging
import threading
import time

from pipeline.core.states import SourceState
from pipeline.core.uris import is_live
from pipeline.live.decoder_process import backoff_delay
from pipeline.live.source_handle import SourceHandle
from pipeline.live.supervisor import DecoderSupervisor

log = logging.getLogger(__name__)


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
                if self._stop.is_set() or self.supervisor.stopping:
                    break
                try:
                    self.check(handle)
                except Exception:  # one source's trouble must not end the watching of all
                    log.exception("%s: the watchdog could not check this source", handle.spec.id)

    def check(self, handle: SourceHandle) -> None:
        """Restart `handle`'s decoder if a restart is due, it stalled, or it exited without a final state.

        Only network streams and devices are restarted (and only they can stall: a paced file
        may wait for its next timestamp): a file's decoder that dies fails the source, since a
        restart would decode the file again from its start."""
        live = self.supervisor.live
        now = time.monotonic()
        if handle.failure and handle.process is not None:
            self.supervisor.terminate(handle)  # failed downstream: its frames are not wanted
        network = is_live(handle.spec.uri)
        with self.supervisor.ready:
            if handle.state.final or handle.failure:
                return
            if handle.restart_at is not None:
                if now < handle.restart_at:
                    return
                handle.restart_at = None
                restart_now = True
            else:
                restart_now = False
                gone = handle.process is None or not handle.process.is_alive()
                if gone and handle.messages is not None:
                    return  # its last messages (perhaps `ended`) are still being read
                stalled = (network and handle.state is SourceState.LIVE
                           and now - handle.last_frame_at > live.stall_timeout_s)
                if not gone and not stalled:
                    return
        if restart_now:
            self.supervisor.spawn(handle)
            return
        exit_code = handle.process.exitcode if handle.process is not None else None
        reason = (f"no frame for {now - handle.last_frame_at:.0f}s" if not gone
                  else f"decoder process exited (code {exit_code}) without ending the source")
        self.supervisor.terminate(handle)
        with self.supervisor.ready:
            if not network:
                log.error("%s: %s; a file is not decoded twice, the source is failed", handle.spec.id, reason)
                handle.transition(SourceState.FAILED, reason)
            else:
                log.warning("%s: %s; restarting its decoder", handle.spec.id, reason)
                handle.restarts += 1
                handle.transition(SourceState.RECONNECTING, reason)
                handle.restart_at = now + backoff_delay(handle.restarts, live.backoff_initial_s, live.backoff_max_s)
            self.supervisor.ready.notify_all()
