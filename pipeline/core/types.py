"""Typed values that flow between pipeline stages (the batch result is `engine.batch.Detections`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.core.states import SourceState


@dataclass(frozen=True)
class Frame:
    """One decoded image of a source, still uint8 BGR (height, width, 3)."""

    source_id: str
    index: int
    pts: float
    """Presentation time in seconds from the start of the source."""
    wall_time: float
    """Unix time (seconds) at which the frame was received from the decoder."""
    image: np.ndarray
    width: int = 0
    height: int = 0
    """The source's own frame size when `image` was downscaled on the way (0: the image's size)."""
    slot: int = -1
    """The shared-memory slot holding `image` until released (-1: the frame owns its image)."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in the source's own pixels."""
        height, width = self.image.shape[:2]
        return (self.width or width, self.height or height)


@dataclass(frozen=True)
class StatusChange:
    """A source's state change; it travels through every stage in order with the source's frames."""

    source_id: str
    state: SourceState
    reason: str = ""
    info: dict = field(default_factory=dict)
    """Details the decoder learnt on connecting (width, height, fps), or at the end (`damaged_packets`)."""


Entry = Frame | StatusChange
"""What a batch carries, in order: frames and the status changes between them."""
