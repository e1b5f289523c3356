"""The Redis contract: key names, entry ids and field encoding, shared by writers and readers.

Version 1 (the default) names a source's keys `{prefix}:{kind}:{source}`. Version 2, for
Redis Cluster, puts the source id in a hash tag, `{prefix}:{{source}}:{kind}`, so that every
key of one source lies in one hash slot (one node, one MULTI). Both versions share the
status hash `{prefix}:sources` and the pub/sub channel `{prefix}:events`, and the same
fields; the entries' `v` field says which version wrote them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.core.config import RedisConfig

SCHEMA_VERSION = "1"
"""The `v` of contract-v1 entries."""
CONTRACT_VERSIONS = (1, 2)
READABLE_VERSIONS = tuple(str(version) for version in CONTRACT_VERSIONS)
"""The `v` values readers accept."""
_TAGGED = re.compile(r"\{([^{}]+)\}:[a-z]+$")
"""A contract-v2 per-source key ends in `{source}:kind`."""


@dataclass(frozen=True)
class RedisKeys:
    """Key names of the contract under one prefix, in contract version 1 or 2."""

    prefix: str = "emotion"
    version: int = 1

    @classmethod
    def of(cls, config: RedisConfig) -> RedisKeys:
        """The keys `config` writes and reads (`redis.prefix`, `redis.contract`)."""
        return cls(config.prefix, config.contract)

    def other_layout(self) -> RedisKeys:
        """The same prefix in the other contract version: one source id names one source across both."""
        return RedisKeys(self.prefix, 3 - self.version)

    @property
    def schema(self) -> str:
        """The `v` field of the entries written under these keys."""
        return str(self.version)

    def frames(self, source_id: str) -> str:
        """Stream of per-frame entries of one source."""
        return self._per_source("frames", source_id)

    def events(self, source_id: str) -> str:
        """Stream of events of one source."""
        return self._per_source("events", source_id)

    def claim(self, source_id: str) -> str:
        """String naming the one run that may write the source's keys now (expires unless renewed)."""
        return self._per_source("claim", source_id)

    def dead_letters(self, source_id: str) -> str:
        """Stream where consumer groups move the malformed entries of one source's streams."""
        return self._per_source("dead", source_id)

    @staticmethod
    def source_of(stream: str) -> str:
        """The source id in a per-source key of either version (ids hold neither a colon nor braces)."""
        tagged = _TAGGED.search(stream)
        return tagged.group(1) if tagged else stream.rsplit(":", 1)[-1]

    @property
    def channel(self) -> str:
        """Pub/sub channel on which every event is also published."""
        return f"{self.prefix}:events"

    @property
    def sources(self) -> str:
        """Hash of source id to JSON status."""
        return f"{self.prefix}:sources"

    def _per_source(self, kind: str, source_id: str) -> str:
        if self.version == 2:
            return f"{self.prefix}:{{{source_id}}}:{kind}"
        return f"{self.prefix}:{kind}:{source_id}"


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
