"""Before a file run writes: what Redis holds for its source id already, and what the run may add.

Idempotence keys on what the entries are (the run record: file, model, settings), not on
their position: a re-run of the same record resumes after the entries that are there (adding
nothing when the earlier run ended), a run of another record is refused unless it replaces
the source's streams explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from pipeline.core.contract import RedisKeys
from pipeline.core.errors import SinkError
from pipeline.sinks.run_record import RunRecord

StreamId = tuple[int, int]


def parse_stream_id(entry_id: str | bytes) -> StreamId:
    """`<ms>-<seq>` as a pair that compares in stream order."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, seq = text.split("-")
    return int(ms), int(seq)


@dataclass(frozen=True)
class ResumePoint:
    """The last entries an earlier run of the same record left: a re-run sends nothing up to them."""

    frames_after: StreamId
    events_after: StreamId
    state: str
    """The earlier run's last state (ended: this run adds nothing)."""


def prepare_source(client: redis.Redis, keys: RedisKeys, source_id: str, record: RunRecord,
                   replace: bool) -> ResumePoint | None:
    """Where the run of `record` may write for `source_id`: None to write from the start, a
    `ResumePoint` to skip what is there; SinkError when Redis holds other data under its keys.
    `replace` deletes the source's frames and events streams and status first."""
    frames_key, events_key = keys.frames(source_id), keys.events(source_id)
    _check_type(client, frames_key, "stream")
    _check_type(client, events_key, "stream")
    _check_type(client, keys.sources, "hash")
    if replace:
        client.delete(frames_key, events_key)
        client.hdel(keys.sources, source_id)
        return None
    frames_top, events_top = _top(client, frames_key), _top(client, events_key)
    if frames_top is None and events_top is None:
        return None
    status = _status(client, keys.sources, source_id)
    earlier = status.get("run") if isinstance(status.get("run"), dict) else {}
    if earlier.get("id") != record.id:
        held = client.xlen(frames_key)
        what = ("another run: " + "; ".join(record.differences(earlier))) if earlier else \
            "a run that did not record what it was"
        raise SinkError(f"{frames_key} holds {held} entries of {what}; pass --replace to replace them, "
                        "or use another --source-id")
    return ResumePoint(frames_top or (0, 0), events_top or (0, 0), str(status.get("state", "")))


def _check_type(client: redis.Redis, key: str, expected: str) -> None:
    held = client.type(key)
    held = held.decode() if isinstance(held, bytes) else held
    if held not in ("none", expected):
        raise SinkError(f"Redis key {key} holds a {held}, not a {expected}: delete it or use another "
                        f"{'--source-id' if expected == 'stream' else 'redis.prefix'}")


def _top(client: redis.Redis, key: str) -> StreamId | None:
    last = client.xrevrange(key, count=1)
    return parse_stream_id(last[0][0]) if last else None


def _status(client: redis.Redis, sources_key: str, source_id: str) -> dict:
    raw = client.hget(sources_key, source_id)
    try:
        status = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}
