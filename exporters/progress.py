"""Exports say what they do and how long it took: a log line before and one after (also without a terminal)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class ExportProgress:
    """One export under way: `started` logged its first line, `finished` logs the second."""

    name: str
    """The user's weights file name."""
    fmt: str
    began: float = field(default_factory=time.perf_counter)

    @classmethod
    def started(cls, name: str, fmt: str, detail: str) -> ExportProgress:
        """Log "exporting NAME to FMT DETAIL" and start the clock."""
        log.info("exporting %s to %s %s", name, fmt, detail)
        return cls(name, fmt)

    def finished(self, artifact: Path) -> None:
        """Log how long the export took and where its result is."""
        log.info("%s exported to %s in %.1f s: %s", self.name, self.fmt, time.perf_counter() - self.began, artifact)
