"""Where a training run is heading after its first epoch: a fingerprint of the weight update, to compare runs.

Two runs of one recipe (same data, settings and trainer code) make the same first update, up to
floating-point noise between machines; a changed recipe makes a different one. The fingerprint is
the update (EMA weights after epoch 1 minus the weights at the start) projected on fixed random
directions, so comparing two runs needs a few numbers, not two checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ultralytics import YOLO

DIRECTIONS = 32
SAME_DIRECTION = 0.99
"""Cosine similarity above which two first updates count as the same (unrelated ones are near 0)."""
SAME_SIZE = 0.02
"""Relative difference of their lengths below which two first updates count as the same."""


@dataclass(frozen=True)
class UpdateFingerprint:
    """The first epoch's weight update projected on `DIRECTIONS` fixed random directions."""

    projections: tuple[float, ...]

    def similarity(self, other: UpdateFingerprint) -> float:
        """Cosine similarity of the two projected updates."""
        dot = sum(a * b for a, b in zip(self.projections, other.projections))
        return dot / (self.length * other.length) if self.length and other.length else 0.0

    @property
    def length(self) -> float:
        """Euclidean length of the projected update."""
        return math.sqrt(sum(a * a for a in self.projections))

    def same_as(self, other: UpdateFingerprint) -> bool:
        """True when both updates point the same way and are about as long."""
        size = abs(self.length - other.length) / max(self.length, other.length, 1e-12)
        return self.similarity(other) >= SAME_DIRECTION and size <= SAME_SIZE


class FirstEpochRecorder:
    """ultralytics callbacks: the weights at the start, their update after the first epoch; optionally stop there."""

    def __init__(self, stop_after_first: bool = False) -> None:
        self.stop_after_first = stop_after_first
        self.fingerprint: UpdateFingerprint | None = None
        self._start: torch.Tensor | None = None

    def attach(self, model: YOLO) -> None:
        """Register on `model` before `model.train(...)`."""
        model.add_callback("on_train_start", self._on_train_start)
        model.add_callback("on_train_epoch_end", self._on_train_epoch_end)

    def _on_train_start(self, trainer: Any) -> None:
        self._start = _flat_weights(trainer.ema.ema)

    def _on_train_epoch_end(self, trainer: Any) -> None:
        if self.fingerprint is not None or self._start is None:
            return
        update = _flat_weights(trainer.ema.ema) - self._start
        self.fingerprint = UpdateFingerprint(tuple(_project(update)))
        if self.stop_after_first:
            trainer.stop = True


def _flat_weights(model: torch.nn.Module) -> torch.Tensor:
    state = model.state_dict()
    return torch.cat([state[name].detach().flatten().double() for name in sorted(state)
                      if state[name].is_floating_point()])


def _project(vector: torch.Tensor) -> list[float]:
    generator = torch.Generator().manual_seed(20261127)
    return [float(torch.randn(vector.numel(), generator=generator, dtype=torch.float64) @ vector) / math.sqrt(
        vector.numel()) for _ in range(DIRECTIONS)]
