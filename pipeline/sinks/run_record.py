"""What a run of one file is: the file's identity, the model and every setting that shapes its entries.

Two runs with the same record produce the same entries, so a re-run may skip what an earlier
run of the same record left in Redis; a re-run with another record must not mix its entries
with those. The record is published in the source's `emotion:sources` status as `run`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SAMPLE_BYTES = 64 * 1024


def file_identity(path: Path) -> tuple[int, str]:
    """(size, sha256 of its first and last 64 KiB): a file's identity, whatever its name or copy time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(0)
        digest.update(handle.read(_SAMPLE_BYTES))
        handle.seek(max(0, size - _SAMPLE_BYTES))
        digest.update(handle.read(_SAMPLE_BYTES))
    return size, digest.hexdigest()[:32]


@dataclass(frozen=True)
class RunRecord:
    """A file run's identity; `id` is a hash of everything but the file's name."""

    video: str
    """The file's name (for people; renaming a file does not change the run)."""
    size: int
    sample_sha256: str
    model: str
    settings: dict[str, Any] = field(default_factory=dict)
    """Stride, detector settings, frame limit and a hash of the tracking and events settings."""

    @classmethod
    def for_file(cls, path: Path, model_id: str, settings: dict[str, Any]) -> RunRecord:
        """The record of running `model_id` with `settings` over the file at `path` (OSError if unreadable)."""
        size, sample = file_identity(path)
        return cls(path.name, size, sample, model_id, settings)

    @property
    def id(self) -> str:
        """16 hex digits naming the run."""
        identity = {"size": self.size, "sample_sha256": self.sample_sha256, "model": self.model, **self.settings}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """The `run` object of the source's status."""
        return {"id": self.id, "video": self.video, "size": self.size, "sample_sha256": self.sample_sha256,
                "model": self.model, **self.settings}

    def differences(self, other: dict[str, Any]) -> list[str]:
        """What differs from an earlier run's `run` object, e.g. "stride 2 there, 1 now"."""
        mine = self.to_json()
        names = [key for key in mine if key not in ("id", "video") and other.get(key) != mine[key]]
        if "sample_sha256" in names or "size" in names:
            names = ["video"] + [name for name in names if name not in ("size", "sample_sha256")]
            other = other | {"video": f"{other.get('video')} (another file)"}
        return [f"{name} {other.get(name)} there, {mine[name]} now" for name in names]


def settings_hash(*sections: Any) -> str:
    """A short hash of dataclass-like settings sections (their `__dict__`)."""
    text = json.dumps([vars(section) for section in sections], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
