"""Reading through a Redis consumer group: at-least-once, acknowledged, malformed entries dead-lettered.

An entry is acknowledged only after the caller has handled it (asked for the next one).
A malformed entry is copied to the source's dead-letter stream (`{prefix}:dead:{source}`)
and acknowledged, so one bad entry never holds a group up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis

from pipeline.core.contract import RedisKeys
from pipeline.sinks.entries import MalformedEntry, text_of
from pipeline.sinks.redis_client import Client
from pipeline.sinks.stream_reading import BATCH, Parser, Replies, Report, Skipped, read_by_slot, redis_replies

T = TypeVar("T")
DEAD_LETTER_MAXLEN = 10_000
ORIGINAL_FIELD_PREFIX = b"entry:"


@dataclass(frozen=True)
class GroupMember:
    """Who reads: the group, this consumer's name, and when another consumer's entries are taken over."""

    group: str
    consumer: str
    claim_idle_ms: int


class GroupCursor(Generic[T]):
    """A consumer in a group: on joining a stream it first gets its own unacknowledged entries
    (a restart after a crash), then those other consumers left unacknowledged for `claim_idle_ms`,
    then new ones."""

    def __init__(self, client: Client, keys: RedisKeys, member: GroupMember, parse: Parser[T],
                 report: Report) -> None:
        self.client = client
        self.keys = keys
        self.member = member
        self.parse = parse
        self.report = report
        self.joined: list[str] = []

    def join(self, stream: str, at_start: bool) -> Iterator[T]:
        """Create the group on `stream` (from its first entry, whenever the stream was found) if
        needed, then deliver the backlog."""
        with redis_replies(f"creating group {self.member.group} on {stream}"):
            try:
                self.client.xgroup_create(stream, self.member.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        yield from self._own_pending(stream)
        yield from self._claimed(stream)
        self.joined.append(stream)

    def read(self, block_ms: int | None) -> Replies:
        """New entries of every joined stream."""
        with redis_replies(f"reading group {self.member.group} of {', '.join(self.joined)}"):
            return read_by_slot(self.client, dict.fromkeys(self.joined, ">"), self._xreadgroup, block_ms)

    def _xreadgroup(self, streams: dict[str, str], block_ms: int | None) -> Replies:
        return self.client.xreadgroup(self.member.group, self.member.consumer, streams, count=BATCH, block=block_ms)

    def deliver(self, stream: str, entry_id: str, fields: dict) -> Iterator[T]:
        """Yield the decoded entry, then acknowledge it; dead-letter a malformed one."""
        if not fields:  # a pending entry trimmed away before it was acknowledged: nothing left to hand over
            self._ack(stream, entry_id)
            self.report(Skipped(stream, "it was trimmed from the stream before it was acknowledged", entry_id))
            return
        try:
            item = self.parse(stream, entry_id, fields)
        except MalformedEntry as exc:
            dead = self._dead_letter(stream, entry_id, fields, str(exc))
            self.report(Skipped(stream, str(exc), entry_id, moved_to=dead))
            return
        yield item
        self._ack(stream, entry_id)

    def _own_pending(self, stream: str) -> Iterator[T]:
        after = "0"
        while True:
            with redis_replies(f"reading the pending entries of group {self.member.group} on {stream}"):
                reply = self.client.xreadgroup(self.member.group, self.member.consumer, {stream: after}, count=BATCH)
            entries = reply[0][1] if reply else []
            if not entries:
                return
            for entry_id, fields in entries:
                yield from self.deliver(stream, text_of(entry_id), fields)
            after = text_of(entries[-1][0])

    def _claimed(self, stream: str) -> Iterator[T]:
        start = "0-0"
        while True:
            with redis_replies(f"claiming idle entries of group {self.member.group} on {stream}"):
                start, claimed, *deleted = self.client.xautoclaim(
                    stream, self.member.group, self.member.consumer, self.member.claim_idle_ms, start, count=BATCH)
            for entry_id in deleted[0] if deleted else []:
                self.report(Skipped(stream, "it was trimmed from the stream before it was acknowledged",
                                    text_of(entry_id)))
            for entry_id, fields in claimed:
                yield from self.deliver(stream, text_of(entry_id), fields)
            if text_of(start) == "0-0":
                return

    def _ack(self, stream: str, entry_id: str) -> None:
        with redis_replies(f"acknowledging entry {entry_id} of {stream}"):
            self.client.xack(stream, self.member.group, entry_id)

    def _dead_letter(self, stream: str, entry_id: str, fields: dict, reason: str) -> str:
        """Copy the entry (its fields byte for byte, names prefixed `entry:`) to the dead-letter
        stream, then acknowledge it: a crash in between leaves a copy too many, never none."""
        dead = self.keys.dead_letters(RedisKeys.source_of(stream))
        letter: dict = {"stream": stream, "id": entry_id, "group": self.member.group,
                        "consumer": self.member.consumer, "reason": reason}
        letter |= {ORIGINAL_FIELD_PREFIX + _raw(name): value for name, value in fields.items()}
        with redis_replies(f"moving entry {entry_id} of {stream} to {dead}"):
            self.client.xadd(dead, letter, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
        self._ack(stream, entry_id)
        return dead


def _raw(name: bytes | str) -> bytes:
    return name if isinstance(name, bytes) else name.encode()
