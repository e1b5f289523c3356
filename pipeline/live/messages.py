"""Typed messages from a decoder process to the inference process (small, picklable; pixels stay in shared memory)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.states import SourceState


@dataclass(frozen=True)
class FrameReady:
    """A decoded frame waits in shared-memory slot `slot`."""

    source_id: str
    generation: int
    """The decoder's restart count; messages of a replaced decoder are ignored."""
    slot: int
    index: int
    pts: float
    wall_time: float
    height: int
    width: int
    """The image's size in the slot."""
    decoder_drops: int
    """Frames this decoder process dropped so far because no slot was free."""
    source_width: int
    source_height: int
    """The frame's size before it was downscaled into the slot."""


@dataclass(frozen=True)
class StatusReport:
    """The decoder's source changed state."""

    source_id: str
    generation: int
    state: SourceState
    reason: str = ""
    info: dict = field(default_factory=dict)


DecoderMessage = FrameReady | StatusReport
