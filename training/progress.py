"""Training progress over epochs, on stderr: a tqdm bar on a terminal, one plain line per epoch otherwise.

Hooked into ultralytics' trainer callbacks, so `emotion-stream train` and the demo's tiny model show
epochs, losses, mAP50 and ETA while they train, then `best.pt  mAP50 ...` from ultralytics' final
validation. Where ultralytics prints its own per-batch bars (`emotion-stream -v`), the epoch lines are
used even on a terminal so the two bars do not fight.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from ultralytics import YOLO

MAP50_PREFIX = "metrics/mAP50("
"""ultralytics' metric key for mAP at IoU 0.5, e.g. `metrics/mAP50(B)` for boxes."""


class ProgressMode(Enum):
    """How progress is shown."""

    BAR = "bar"
    LINES = "lines"


@dataclass(frozen=True)
class EpochSummary:
    """One finished epoch: its number (1-based), training losses, validation mAP50 and duration."""

    epoch: int
    epochs: int
    losses: dict[str, float]
    map50: float | None
    seconds: float

    @classmethod
    def from_trainer(cls, trainer: Any) -> EpochSummary:
        """The epoch an ultralytics trainer has just finished (read in `on_fit_epoch_end`)."""
        losses = {key.removeprefix("train/").removesuffix("_loss"): value
                  for key, value in trainer.label_loss_items(trainer.tloss).items()}
        return cls(trainer.epoch + 1, trainer.epochs, losses, map50(trainer.metrics) if trainer.args.val else None,
                   float(trainer.epoch_time))

    def scores(self) -> str:
        """`box 1.234 cls 2.345 dfl 1.012  mAP50 0.812` (mAP50 only when the epoch was validated)."""
        text = " ".join(f"{name} {value:.3f}" for name, value in self.losses.items())
        return text if self.map50 is None else f"{text}  mAP50 {self.map50:.3f}"

    def line(self, eta_seconds: float) -> str:
        """`epoch 3/40  box 1.234 cls 2.345 dfl 1.012  mAP50 0.812  12.1 s/epoch  ETA 7m24s`."""
        return (f"epoch {self.epoch}/{self.epochs}  {self.scores()}  {self.seconds:.1f} s/epoch  "
                f"ETA {format_duration(eta_seconds)}")


def map50(metrics: dict[str, float]) -> float | None:
    """mAP50 out of ultralytics' validation metrics, None when they have none."""
    return next((float(value) for key, value in metrics.items() if key.startswith(MAP50_PREFIX)), None)


def format_duration(seconds: float) -> str:
    """`42s`, `7m24s` or `1h02m`."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class TrainingProgress:
    """Shows epochs, losses and ETA of an ultralytics training run on stderr (as it is when created)."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self._bar: tqdm | None = None
        self._first_epoch = 0
        self._seconds = 0.0
        self._epoch_trained = False

    def attach(self, model: YOLO) -> None:
        """Register on `model` (an ultralytics YOLO) before `model.train(...)`."""
        model.add_callback("on_train_start", self._on_train_start)
        model.add_callback("on_train_epoch_end", self._on_train_epoch_end)
        model.add_callback("on_fit_epoch_end", self._on_fit_epoch_end)
        model.add_callback("teardown", self._close)  # runs however training ends, failures included

    def mode(self) -> ProgressMode:
        """A bar when the stream is a terminal and ultralytics prints no bars of its own; lines otherwise."""
        from ultralytics.utils import LOGGER

        terminal = self.stream.isatty() and not LOGGER.isEnabledFor(logging.INFO)
        return ProgressMode.BAR if terminal else ProgressMode.LINES

    def _on_train_start(self, trainer: Any) -> None:
        self._first_epoch, self._seconds = trainer.start_epoch, 0.0  # a resumed run starts where it left off
        if self.mode() is ProgressMode.BAR:
            self._bar = tqdm(total=trainer.epochs, initial=trainer.start_epoch, desc="train", unit="epoch",
                             file=self.stream, dynamic_ncols=True)

    def _on_train_epoch_end(self, _trainer: Any) -> None:
        self._epoch_trained = True

    def _on_fit_epoch_end(self, trainer: Any) -> None:
        if not self._epoch_trained:  # ultralytics' final validation of best.pt, after the last epoch
            best = map50(trainer.metrics)
            if best is not None:
                print(f"best.pt  mAP50 {best:.3f}", file=self.stream, flush=True)
            return
        self._epoch_trained = False
        summary = EpochSummary.from_trainer(trainer)
        if self._bar is not None:
            self._bar.total = summary.epochs  # ultralytics re-plans epochs when trained for a `time` budget
            self._bar.set_postfix_str(summary.scores(), refresh=False)
            self._bar.update(summary.epoch - self._bar.n)
            if trainer.stop:  # the last epoch (or an early stop): closed before ultralytics validates best.pt
                self._close(trainer)
            return
        self._seconds += summary.seconds
        remaining = 0 if trainer.stop else summary.epochs - summary.epoch
        print(summary.line(self._seconds / (summary.epoch - self._first_epoch) * remaining), file=self.stream,
              flush=True)

    def _close(self, _trainer: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
