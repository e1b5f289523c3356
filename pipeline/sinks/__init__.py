"""Sinks receive batches of `FrameResult`s in frame order and persist them."""

from __future__ import annotations

from typing import Protocol

from pipeline.types import FrameResult


class Sink(Protocol):
    """Anything that stores results; `close` flushes and releases it."""

    def write(self, results: list[FrameResult]) -> None:
        """Persist one batch of results."""

    def close(self) -> None:
        """Flush and release resources."""
