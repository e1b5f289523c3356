"""Redis contract v1: key names, entry ids and field encoding, shared by writers and readers."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class RedisKeys:
    """Key names of the contract under one prefix."""

    prefix: str = "emotion"

    def frames(self, source_id: str) -> str:
        """Stream of per-frame entries of one source."""
        return f"{self.prefix}:frames:{source_id}"

    def events(self, source_id: str) -> str:
        """Stream of events of one source."""
        return f"{self.prefix}:events:{source_id}"

    def claim(self, source_id: str) -> str:
        """String naming the one run that may write the source's keys now (expires unless renewed)."""
        return f"{self.prefix}:claim:{source_id}"

    def dead_letters(self, source_id: str) -> str:
        """Stream where consumer groups move the malformed entries of one source's streams."""
        return f"{self.prefix}:dead:{source_id}"

    @staticmethod
    def source_of(stream: str) -> str:
        """The source id that ends a per-source key (ids never hold a colon)."""
        return stream.rsplit(":", 1)[-1]

    @property
    def channel(self) -> str:
        """Pub/sub channel on which every event is also published."""
        return f"{self.prefix}:events"

    @property
    def sources(self) -> str:
        """Hash of source id to JSON status."""
        return f"{self.prefix}:sources"


class StreamIdAllocator:
    """Deterministic, strictly increasing stream ids `<ms>-<seq>` derived from timestamps.

    For files the timestamp is the presentation time, so re-running a file yields the same
    ids and Redis rejects the repeats; that is how re-runs and replays stay free of duplicates.
    """

    def __init__(self) -> None:
        self._last = (0, 0)

    def next(self, milliseconds: int) -> str:
        """The id for an entry at `milliseconds`, bumped past the previous id if needed."""
        last_ms, last_seq = self._last
        if milliseconds > last_ms:
            current = (milliseconds, 0)
        else:
            current = (last_ms, last_seq + 1)
        if current == (0, 0):
            current = (0, 1)
        self._last = current
        return f"{current[0]}-{current[1]}"
