"""Before a file run writes: what Redis holds for its source id already, and what the run may add.

Idempotence keys on what the entries are (the run record: file, model, settings), not on
their position: a re-run of the same record resumes after the entries that are there (adding
nothing when the earlier run ended), a run of another record is refused unless it replaces
the source's streams explicitly. A job plans every source first and clears any only once all
of them may go ahead. `serve` writes only ids that are empty or its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pipeline.core.contract import RedisKeys
from pipeline.core.errors import SinkError
from pipeline.sinks.redis_client import Client
from pipeline.sinks.run_record import RunRecord

StreamId = tuple[int, int]


def parse_entry_id(entry_id: str | bytes) -> str:
    """An entry id as text."""
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


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
    events_written: dict[str, str] = field(default_factory=dict)
    """The events stream's entries, id to type: the same events (same id and type) are not sent again. An event the
    earlier run never wrote (a face that left just before it was interrupted, seen only now) goes after them, with
    a new id."""


@dataclass(frozen=True)
class SourcePlan:
    """What a file run does with a source id, decided before anything is written."""

    source_id: str
    resume: ResumePoint | None
    """None to write from the start."""
    clear: bool
    """Delete the source's streams and status first (`replace`)."""


def plan_source(client: Client, keys: RedisKeys, source_id: str, record: RunRecord,
                replace: bool) -> SourcePlan:
    """Where the run of `record` may write for `source_id`, changing nothing: SinkError when Redis
    holds other data under its keys. With `replace` the source's own keys are cleared whatever they
    hold (see `clear_source`); the shared status hash must still be a hash."""
    frames_key, events_key = keys.frames(source_id), keys.events(source_id)
    _check_type(client, keys.sources, "hash")
    check_one_layout(client, keys, source_id)  # --replace deletes this layout's keys only: never the other's
    if replace:
        return SourcePlan(source_id, None, clear=True)
    _check_type(client, frames_key, "stream")
    _check_type(client, events_key, "stream")
    frames_top, events_top = _top(client, frames_key), _top(client, events_key)
    if frames_top is None and events_top is None:
        return SourcePlan(source_id, None, clear=False)
    status = _status(client, keys.sources, source_id)
    earlier = status.get("run") if isinstance(status.get("run"), dict) else {}
    if earlier.get("id") != record.id:
        held = client.xlen(frames_key)
        what = ("another run: " + "; ".join(record.differences(earlier))) if earlier else \
            "a run that did not record what it was"
        raise SinkError(f"{frames_key} holds {held} entries of {what}; pass --replace to replace them, "
                        "or use another --source-id")
    written = {parse_entry_id(entry_id): parse_entry_id(fields.get(b"type", fields.get("type", b"")))
               for entry_id, fields in client.xrange(events_key)}
    resume = ResumePoint(frames_top or (0, 0), events_top or (0, 0), str(status.get("state", "")), written)
    return SourcePlan(source_id, resume, clear=False)


def clear_source(client: Client, keys: RedisKeys, source_id: str) -> None:
    """Delete the source's frames and events keys (whatever their type) and its status."""
    client.delete(keys.frames(source_id), keys.events(source_id))
    client.hdel(keys.sources, source_id)


def check_live_source(client: Client, keys: RedisKeys, source_id: str) -> None:
    """SinkError unless what Redis holds under `source_id` is nothing or an earlier `serve` run's: a
    `process` run (its status has a run record) or streams without a status belong to something else."""
    frames_key, events_key = keys.frames(source_id), keys.events(source_id)
    _check_type(client, keys.sources, "hash")
    check_one_layout(client, keys, source_id)
    _check_type(client, frames_key, "stream", "the source id")
    _check_type(client, events_key, "stream", "the source id")
    status = _status(client, keys.sources, source_id)
    run = status.get("run")
    if isinstance(run, dict):
        raise SinkError(f"source {source_id}: Redis holds a process run of {run.get('video')} under this id "
                        f"({client.xlen(frames_key)} entries in {frames_key}); serve another id, or delete them")
    if not status and (_top(client, frames_key) or _top(client, events_key)):
        raise SinkError(f"source {source_id}: {frames_key} holds {client.xlen(frames_key)} entries that no run "
                        "recorded in the status; serve another id, or delete them")


def check_one_layout(client: Client, keys: RedisKeys, source_id: str) -> None:
    """SinkError when `source_id` belongs to a run of the other contract version: its streams there hold entries,
    or the shared status was written under it (the status hash is the same for both layouts)."""
    other = keys.other_layout()
    for key in (other.frames(source_id), other.events(source_id)):
        if client.exists(key):
            raise SinkError(f"source {source_id}: {key} holds a contract-{other.version} run's entries (this run "
                            f"writes contract {keys.version}); one id is one source in both layouts: use another "
                            "source id, or delete them (--replace deletes only this layout's keys)")
    version = _status(client, keys.sources, source_id).get("v")
    if version is not None and str(version) != keys.schema:
        raise SinkError(f"source {source_id}: its status in {keys.sources} is a contract-{version} run's (this run "
                        f"writes contract {keys.version}); use another source id")


def _check_type(client: Client, key: str, expected: str, other: str = "") -> None:
    held = client.type(key)
    held = held.decode() if isinstance(held, bytes) else held
    if held not in ("none", expected):
        other = other or ("--source-id" if expected == "stream" else "redis.prefix")
        raise SinkError(f"Redis key {key} holds a {held}, not a {expected}: delete it or use another {other}")


def _top(client: Client, key: str) -> StreamId | None:
    last = client.xrevrange(key, count=1)
    return parse_stream_id(last[0][0]) if last else None


def _status(client: Client, sources_key: str, source_id: str) -> dict:
    raw = client.hget(sources_key, source_id)
    try:
        status = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}
