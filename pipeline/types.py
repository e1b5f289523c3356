"""Typed values that flow between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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


@dataclass(frozen=True)
class Face:
    """One detected face with the full class-probability vector of the model."""

    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in source pixels."""
    emotion: str
    score: float
    scores: dict[str, float]
    track_id: int | None = None

    def to_json(self) -> dict:
        """The face as the Redis contract's JSON object."""
        return {
            "id": self.track_id,
            "box": [round(v, 1) for v in self.box],
            "emotion": self.emotion,
            "score": round(self.score, 4),
            "scores": {name: round(value, 4) for name, value in self.scores.items()},
        }


@dataclass(frozen=True)
class FrameResult:
    """What the detector found in one frame."""

    source_id: str
    index: int
    pts: float
    wall_time: float
    width: int
    height: int
    faces: list[Face] = field(default_factory=list)
