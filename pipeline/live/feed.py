"""The engine's feed for live sources: fair batches across sources, status changes in order.

Frames are taken round-robin across sources, so a fast source cannot starve the others,
and a partial batch goes once `max_wait_s` passed: a camera pausing around a keyframe
never holds back the rest. Each source's status changes leave in order with its frames.
"""

from __future__ import annotations

import time

from pipeline.core.states import SourceState
from pipeline.core.types import Entry, Frame, StatusChange
from pipeline.live.messages import FrameReady
from pipeline.live.source_handle import SourceHandle
from pipeline.live.supervisor import DecoderSupervisor


class LiveFeed:
    """Fair batches from the supervisor's sources (`FrameFeed`)."""

    def __init__(self, supervisor: DecoderSupervisor, max_wait_s: float, idle_wait_s: float = 0.2) -> None:
        self.supervisor = supervisor
        self.max_wait_s = max_wait_s
        self.idle_wait_s = idle_wait_s
        self._cursor = 0

    def next_batch(self, max_frames: int) -> list[Entry] | None:
        """Up to `max_frames` frames round-robin, with status changes; None when every source is finished."""
        handles = list(self.supervisor.handles.values())
        with self.supervisor.ready:
            if not any(handle.pending for handle in handles):
                if all(handle.finished for handle in handles):
                    return None
                self.supervisor.ready.wait(self.idle_wait_s)
            deadline = time.monotonic() + self.max_wait_s
            while (0 < self._waiting_frames(handles) < max_frames
                   and (remaining := deadline - time.monotonic()) > 0):
                self.supervisor.ready.wait(remaining)
            return self._take_round_robin(handles, max_frames)

    def release(self, frames: list[Frame]) -> None:
        """Hand the frames' slots back to their decoders, one message per source."""
        slots: dict[str, list[int]] = {}
        for frame in frames:
            slots.setdefault(frame.source_id, []).append(frame.slot)
        with self.supervisor.ready:
            for source_id, source_slots in slots.items():
                self.supervisor.give_back(self.supervisor.handles[source_id], source_slots)

    def fail(self, source_id: str, reason: str) -> None:
        """A source failed downstream: drop what waits of it; the watchdog stops its decoder."""
        with self.supervisor.ready:
            handle = self.supervisor.handles[source_id]
            handle.failure = reason
            dropped = [item.slot for item in handle.pending if isinstance(item, FrameReady)]
            handle.pending.clear()
            handle.waiting_frames = 0
            handle.state = SourceState.FAILED
            self.supervisor.give_back(handle, dropped)

    @staticmethod
    def _waiting_frames(handles: list[SourceHandle]) -> int:
        return sum(handle.waiting_frames for handle in handles)

    def _take_round_robin(self, handles: list[SourceHandle], max_frames: int) -> list[Entry]:
        taken: list[Entry] = []
        frames = 0
        while frames < max_frames and any(handle.pending for handle in handles):
            for offset in range(len(handles)):
                handle = handles[(self._cursor + offset) % len(handles)]
                while handle.pending and isinstance(handle.pending[0], StatusChange):
                    taken.append(handle.take())
                if handle.pending and frames < max_frames:
                    taken.append(self._frame(handle, handle.take()))
                    frames += 1
            self._cursor = (self._cursor + 1) % len(handles)
        return taken

    @staticmethod
    def _frame(handle: SourceHandle, ready: FrameReady) -> Frame:
        image = handle.ring.view(ready.slot, ready.height, ready.width)
        return Frame(handle.spec.id, ready.index, ready.pts, ready.wall_time, image, ready.source_width,
                     ready.source_height, ready.slot)
