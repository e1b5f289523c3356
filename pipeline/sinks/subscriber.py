"""Follow a source's frames stream: what `emotion-stream subscribe` prints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from pipeline.core.contract import RedisKeys
from pipeline.core.errors import SinkError

ENDED_STATES = {"ended", "failed"}


@dataclass(frozen=True)
class FrameEntry:
    """One decoded `emotion:frames:{source}` entry."""

    entry_id: str
    frame: int
    pts: float
    ts: int
    faces: list[dict]
    model: str

    def to_json(self) -> dict:
        """The entry as JSON, faces parsed."""
        return {
            "id": self.entry_id,
            "frame": self.frame,
            "pts": self.pts,
            "ts": self.ts,
            "faces": self.faces,
            "model": self.model,
        }

    def format(self) -> str:
        """One human-readable line."""
        faces = ", ".join(f"{face['emotion']} {face['score']:.2f}" for face in self.faces) or "-"
        return f"{self.pts:9.3f}s  frame {self.frame:>6}  {len(self.faces)} face(s): {faces}"


def parse_entry(entry_id: bytes | str, fields: dict) -> FrameEntry:
    """Decode a raw XREAD/XRANGE entry of the frames stream."""
    text = {_text(k): _text(v) for k, v in fields.items()}
    return FrameEntry(
        entry_id=_text(entry_id),
        frame=int(text["frame"]),
        pts=float(text["pts"]),
        ts=int(text["ts"]),
        faces=json.loads(text["faces"]),
        model=text.get("model", ""),
    )


def follow_frames(
    client: redis.Redis,
    keys: RedisKeys,
    source_id: str,
    from_start: bool = False,
    stop_when_ended: bool = False,
    block_ms: int = 1000,
) -> Iterator[FrameEntry]:
    """Yield entries as they arrive (from the first entry with `from_start`, else only new ones).

    With `stop_when_ended`, iteration ends once the source's status says ended or failed and
    no entries remain unread.
    """
    stream = keys.frames(source_id)
    last_id = "0-0" if from_start else _top_id(client, stream)
    while True:
        try:
            replies = client.xread({stream: last_id}, count=500, block=block_ms)
        except redis.RedisError as exc:
            raise SinkError(f"lost Redis while reading {stream}: {exc}") from None
        for _stream, entries in replies:
            for entry_id, fields in entries:
                last_id = _text(entry_id)
                yield parse_entry(entry_id, fields)
        if not replies and stop_when_ended and _source_state(client, keys, source_id) in ENDED_STATES:
            return


def _top_id(client: redis.Redis, stream: str) -> str:
    newest = client.xrevrange(stream, count=1)
    return _text(newest[0][0]) if newest else "0-0"


def _source_state(client: redis.Redis, keys: RedisKeys, source_id: str) -> str | None:
    raw = client.hget(keys.sources, source_id)
    return json.loads(raw).get("state") if raw else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def event_streams(client: redis.Redis, keys: RedisKeys, source_id: str | None) -> list[str]:
    """The events streams to read: one source's, or every source's (--all)."""
    if source_id:
        return [keys.events(source_id)]
    return sorted(_text(key) for key in client.scan_iter(match=keys.events("*"), count=1000))


def parse_event(fields: dict, stream: str | None = None) -> dict:
    """An events-stream entry as JSON: numbers and lists decoded, the source named."""
    event: dict = {}
    for key, value in ((_text(k), _text(v)) for k, v in fields.items()):
        try:
            event[key] = value if key in ("v", "type", "state", "reason") else json.loads(value)
        except json.JSONDecodeError:
            event[key] = value
    if stream is not None:
        event.setdefault("source", stream.rsplit(":", 1)[-1])
    return event


def follow_events_pubsub(client: redis.Redis, keys: RedisKeys, timeout_s: float | None = None) -> Iterator[dict]:
    """Events as they are published (live only; nothing is replayed)."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.channel)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while deadline is None or time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message":
                yield json.loads(message["data"])
    finally:
        pubsub.close()


def replay_events(
    client: redis.Redis, keys: RedisKeys, source_id: str | None, stop_when_ended: bool = False, block_ms: int = 1000
) -> Iterator[dict]:
    """Events from the start of the stream(s), then new ones as they come."""
    last = {stream: "0-0" for stream in event_streams(client, keys, source_id)}
    while True:
        replies = client.xread(last, count=500, block=block_ms) if last else []
        for stream, entries in replies:
            for entry_id, fields in entries:
                last[_text(stream)] = _text(entry_id)
                yield parse_event(fields, _text(stream))
        if not replies:
            if stop_when_ended and _all_ended(client, keys, last):
                return
            if not source_id:
                last |= {s: "0-0" for s in event_streams(client, keys, None) if s not in last}


def consume_events(
    client: redis.Redis,
    keys: RedisKeys,
    source_id: str | None,
    group: str,
    consumer: str,
    claim_idle_ms: int = 30_000,
    stop_when_ended: bool = False,
    block_ms: int = 1000,
) -> Iterator[dict]:
    """At-least-once delivery through a consumer group: each event is acknowledged only after
    the caller has handled it (asked for the next one).

    First this consumer's own unacknowledged events, then those other consumers left
    unacknowledged for `claim_idle_ms` (a consumer that died), then new ones.
    """
    streams = event_streams(client, keys, source_id)
    for stream in streams:
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
    for stream in streams:
        for entry_id, fields in client.xreadgroup(group, consumer, {stream: "0"}, count=10_000)[0][1]:
            yield parse_event(fields, stream)
            client.xack(stream, group, entry_id)
        start = "0-0"
        while True:
            start, claimed, *_ = client.xautoclaim(stream, group, consumer, claim_idle_ms, start, count=500)
            for entry_id, fields in claimed:
                yield parse_event(fields, stream)
                client.xack(stream, group, entry_id)
            if _text(start) == "0-0":
                break
    while True:
        replies = client.xreadgroup(group, consumer, {stream: ">" for stream in streams}, count=100, block=block_ms)
        for stream, entries in replies:
            for entry_id, fields in entries:
                yield parse_event(fields, _text(stream))
                client.xack(_text(stream), group, entry_id)
        if not replies and stop_when_ended and _all_ended(client, keys, {s: None for s in streams}):
            return


def _all_ended(client: redis.Redis, keys: RedisKeys, streams: dict) -> bool:
    sources = [stream.rsplit(":", 1)[-1] for stream in streams]
    return bool(sources) and all(_source_state(client, keys, source) in ENDED_STATES for source in sources)
