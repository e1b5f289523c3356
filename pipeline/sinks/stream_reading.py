"""Reading contract streams: which streams, until when, and how entries that cannot be read are reported.

On a Redis Cluster one XREAD or XREADGROUP reads streams of one hash slot only, so streams of
several slots are read slot by slot (`read_by_slot`).

A reader never stops on a bad entry or a bad key: it reports a `Skipped` and goes on.
Error replies from Redis (WRONGTYPE, NOGROUP, NOPERM...) and lost connections become one
`SinkError` naming what was being read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

import redis

from pipeline.core.contract import RedisKeys
from pipeline.core.errors import SinkError
from pipeline.core.source_ids import is_valid_source_id
from pipeline.sinks.entries import MalformedEntry, parse_status, text_of
from pipeline.sinks.redis_client import Client, is_cluster, keys_by_slot

T = TypeVar("T")
BATCH = 500
CLUSTER_POLL_S = 0.05
"""How often streams of several hash slots are read while nothing arrives (a cluster cannot block on all)."""
Parser = Callable[[str, str, dict], T]
"""Decodes one entry (stream, entry id, raw fields); raises MalformedEntry."""
Replies = list[tuple[str, list[tuple[str, dict]]]]


@dataclass(frozen=True)
class Skipped:
    """Something a reader passed over: a malformed entry, an entry gone before it was read, a bad key."""

    where: str
    reason: str
    entry_id: str | None = None
    moved_to: str | None = None

    def describe(self) -> str:
        """One line for the user."""
        what = f"entry {self.entry_id} of {self.where}" if self.entry_id else self.where
        moved = f"; acknowledged and moved to {self.moved_to}" if self.moved_to else ""
        return f"skipped {what}: {self.reason}{moved}"


Report = Callable[[Skipped], None]
Read = Callable[[dict[str, str], "int | None"], Replies]
"""One XREAD or XREADGROUP of some streams (stream to the id to read after), blocking up to the ms given."""


@contextlib.contextmanager
def redis_replies(action: str) -> Iterator[None]:
    """Turn Redis errors inside the block into a SinkError that names `action`."""
    try:
        yield
    except redis.ResponseError as exc:
        raise SinkError(f"Redis refused {action}: {exc}") from None
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise SinkError(f"lost Redis while {action}: {exc}") from None


class StreamKind(Enum):
    """Which per-source streams are read."""

    FRAMES = "frames"
    EVENTS = "events"

    def key(self, keys: RedisKeys, source_id: str) -> str:
        """The stream of `source_id`."""
        return keys.frames(source_id) if self is StreamKind.FRAMES else keys.events(source_id)


class StreamSet:
    """One source's stream, or every source's (found again when asked, so new sources join).

    With every source, keys that are not streams or whose name does not hold a source id
    are reported once and left out.
    """

    def __init__(self, client: Client, keys: RedisKeys, kind: StreamKind, source_id: str | None,
                 report: Report) -> None:
        self.client = client
        self.keys = keys
        self.kind = kind
        self.source_id = source_id
        self.report = report
        self.pattern = kind.key(keys, source_id or "*")
        self._streams: list[str] = []
        self._looked_at: set[bytes] = set()

    def current(self) -> list[str]:
        """The streams to read now."""
        if self.source_id:
            return [self.pattern]
        with redis_replies(f"listing {self.pattern}"):
            found = [key for key in self.client.scan_iter(match=self.pattern, count=1000) if key not in self._looked_at]
            types = [text_of(kind) for kind in self._pipelined_types(found)]
        for key, kind in zip(found, types):
            if kind != "none":
                self._look_at(key, kind)
        return sorted(self._streams)

    def _pipelined_types(self, found: list[bytes]) -> list[bytes]:
        pipe = self.client.pipeline(transaction=False)
        for key in found:
            pipe.type(key)
        return pipe.execute()

    def _look_at(self, key: bytes, kind: str) -> None:
        self._looked_at.add(key)
        name = key.decode(errors="backslashreplace")
        source_id = RedisKeys.source_of(name)
        if not is_valid_source_id(source_id) or self.kind.key(self.keys, source_id) != name:
            self.report(Skipped(repr(name), "the name does not hold a source id ([A-Za-z0-9._-]{1,64})"))
        elif kind != "stream":
            self.report(Skipped(name, f"it holds a {kind}, not a stream"))
        else:
            self._streams.append(name)


class SourcesEnded:
    """Whether every source of some streams has ended or failed, per `emotion:sources`.

    A status that cannot be read counts as not ended and is reported once per value.
    """

    def __init__(self, client: Client, keys: RedisKeys, report: Report) -> None:
        self.client = client
        self.keys = keys
        self.report = report
        self._reported: set[tuple[str, bytes]] = set()

    def __call__(self, streams: list[str]) -> bool:
        """True when `streams` is not empty and each one's source has finished (ended or failed; an
        interrupted source is waited for: a re-run continues it)."""
        if not streams:
            return False
        sources = [RedisKeys.source_of(stream) for stream in streams]
        with redis_replies(f"reading {self.keys.sources}"):
            statuses = self.client.hmget(self.keys.sources, sources)
        return all(self._state(source, raw) for source, raw in zip(sources, statuses))

    def _state(self, source: str, raw: bytes | None) -> bool:
        if raw is None:
            return False
        try:
            return parse_status(raw).finished
        except MalformedEntry as exc:
            if (source, raw) not in self._reported:
                self._reported.add((source, raw))
                self.report(Skipped(f"{self.keys.sources} field {source}", str(exc)))
            return False


class Cursor(Protocol[T]):
    """Where a reader stands in its streams, and how it hands entries over."""

    joined: list[str]

    def join(self, stream: str, at_start: bool) -> Iterator[T]:
        """Start reading `stream` (found when reading began, or later); yields what is owed from
        before (a group's pending entries)."""

    def read(self, block_ms: int | None) -> Replies:
        """The next entries of the joined streams, of which there is one at least (waiting up to
        `block_ms`; None: not at all)."""

    def deliver(self, stream: str, entry_id: str, fields: dict) -> Iterator[T]:
        """Yield the entry decoded, or report it skipped."""


def read_loop(streams: StreamSet, cursor: Cursor[T], ended: SourcesEnded | None, block_ms: int) -> Iterator[T]:
    """Entries of `streams` as they come; new streams join whenever nothing is waiting.

    With `ended`, stops once every source has ended and one more read finds nothing
    (so what was written just before the final status is read too).
    """
    draining = False
    at_start = True
    replies: Replies = []
    while True:
        if not replies:
            for stream in streams.current():
                if stream not in cursor.joined:
                    yield from cursor.join(stream, at_start)
            at_start = False
        if cursor.joined:
            replies = cursor.read(None if draining else block_ms)
        else:
            time.sleep(block_ms / 1000)
        for stream, entries in replies:
            for entry_id, fields in entries:
                yield from cursor.deliver(text_of(stream), text_of(entry_id), fields)
        if not replies:
            if draining:
                return
            draining = ended is not None and ended(cursor.joined)


def read_by_slot(client: Client, streams: dict[str, str], read: Read, block_ms: int | None) -> Replies:
    """`read` of `streams`: in one command from one server; from a cluster, one command per hash slot, blocking
    when there is one slot, else polled every `CLUSTER_POLL_S` until something arrives or `block_ms` passed."""
    groups = keys_by_slot(list(streams)) if is_cluster(client) else [list(streams)]
    if len(groups) == 1:
        return read(streams, block_ms)
    deadline = time.monotonic() + (block_ms or 0) / 1000
    while True:
        replies = [reply for group in groups for reply in read({stream: streams[stream] for stream in group}, None)]
        if replies or time.monotonic() >= deadline:
            return replies
        time.sleep(CLUSTER_POLL_S)


class XReadCursor(Generic[T]):
    """Plain XREAD: from the first entry (`from_start`) or from what arrives after the start."""

    def __init__(self, client: Client, parse: Parser[T], report: Report, from_start: bool) -> None:
        self.client = client
        self.parse = parse
        self.report = report
        self.joined: list[str] = []
        self._last: dict[str, str] = {}
        self.from_start = from_start

    def join(self, stream: str, at_start: bool) -> Iterator[T]:
        """Streams found when reading began start after their newest entry unless reading from the
        start; streams found later start at their first."""
        self._last[stream] = self._newest_id(stream) if at_start and not self.from_start else "0-0"
        self.joined.append(stream)
        yield from ()

    def read(self, block_ms: int | None) -> Replies:
        """XREAD of every joined stream past what was read."""
        with redis_replies(f"reading {', '.join(self._last)}"):
            return read_by_slot(self.client, self._last, self._xread, block_ms)

    def _xread(self, streams: dict[str, str], block_ms: int | None) -> Replies:
        return self.client.xread(streams, count=BATCH, block=block_ms)

    def deliver(self, stream: str, entry_id: str, fields: dict) -> Iterator[T]:
        """The decoded entry; a malformed one is reported and passed."""
        self._last[stream] = entry_id
        try:
            item = self.parse(stream, entry_id, fields)
        except MalformedEntry as exc:
            self.report(Skipped(stream, str(exc), entry_id))
            return
        yield item

    def _newest_id(self, stream: str) -> str:
        with redis_replies(f"reading {stream}"):
            newest = self.client.xrevrange(stream, count=1)
        return text_of(newest[0][0]) if newest else "0-0"
