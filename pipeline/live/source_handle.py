"""The inference process's view of one live source: its state machine and its waiting frames."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from pipeline.core.config import SourceSpec
from pipeline.core.frame_ring import FrameRing
from pipeline.core.states import SourceState
from pipeline.core.types import StatusChange
from pipeline.core.uris import mask_uri
from pipeline.live.decoder_process import DecoderSettings
from pipeline.live.messages import FrameReady

log = logging.getLogger(__name__)


@dataclass
class SourceHandle:
    """One source: decoder process, shared memory, state, and what waits for inference.

    `pending` holds the source's frames and status changes in arrival order, so a status
    reaches the sinks right after the frames that came before it.
    """

    spec: SourceSpec
    settings: DecoderSettings
    ring: FrameRing
    messages: Connection | None = None
    """The current decoder's message pipe (None once it reached end of file)."""
    free_slots: Connection | None = None
    """The current decoder's pipe for slots handed back."""
    process: mp.Process | None = None
    state: SourceState = SourceState.CONNECTING
    ever_live: bool = False
    generation: int = 0
    pending: deque[FrameReady | StatusChange] = field(default_factory=deque)
    waiting_frames: int = 0
    in_flight: set[int] = field(default_factory=set)
    dropped: int = 0
    decoder_drops: int = 0
    reconnects: int = 0
    restarts: int = 0
    next_index: int = 0
    last_frame_at: float = field(default_factory=time.monotonic)
    restart_at: float | None = None
    failure: str | None = None
    """Set when the source failed downstream (tracker or sink): its decoder stays stopped."""

    @property
    def live(self) -> bool:
        """True when the source may drop frames rather than wait."""
        return self.settings.live

    @property
    def finished(self) -> bool:
        """True once the source ended or failed and nothing of it awaits inference."""
        return self.state.final and not self.pending

    def add_frame(self, frame: FrameReady, keep_frames: int) -> list[int]:
        """Queue a decoded frame; a live source keeps only its newest `keep_frames`.

        Returns the slots of the frames dropped to make room (to hand back to the decoder)."""
        self.dropped += frame.decoder_drops - self.decoder_drops
        self.decoder_drops = frame.decoder_drops
        self.pending.append(frame)
        self.waiting_frames += 1
        self.next_index = frame.index + 1
        self.last_frame_at = time.monotonic()
        freed: list[int] = []
        while self.live and self.waiting_frames > keep_frames:
            oldest = next(item for item in self.pending if isinstance(item, FrameReady))
            self.pending.remove(oldest)
            self.waiting_frames -= 1
            self.dropped += 1
            freed.append(oldest.slot)
        return freed

    def take(self) -> FrameReady | StatusChange:
        """The oldest waiting item."""
        item = self.pending.popleft()
        if isinstance(item, FrameReady):
            self.waiting_frames -= 1
            self.in_flight.add(item.slot)
        return item

    def transition(self, state: SourceState, reason: str = "", info: dict | None = None) -> None:
        """Apply a state change if the state machine allows it, and queue it in order with the frames.

        A restarted decoder's `connecting` keeps a reconnecting source `reconnecting`; repeats
        and changes after a final state are ignored."""
        if state is SourceState.CONNECTING and self.state is SourceState.RECONNECTING:
            return
        if state is self.state or not self.state.allows(state):
            return
        if state is SourceState.RECONNECTING and self.state is SourceState.LIVE:
            self.reconnects += 1
        self.state = state
        if state is SourceState.LIVE:
            self.restarts = 0
            self.ever_live = True
            self.last_frame_at = time.monotonic()  # the stall clock starts when the source is back
        log.info("%s: %s%s (%s)", self.spec.id, state.value, f": {reason}" if reason else "", mask_uri(self.spec.uri))
        self.pending.append(StatusChange(self.spec.id, state, reason, info or {}))
