"""What `emotion-stream subscribe` reads: a source's frames, or events from streams, a group or pub/sub.

Nothing here stops on a malformed entry: it is reported through `report` and skipped
(under a consumer group, also acknowledged and dead-lettered).
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.core.contract import RedisKeys
from pipeline.sinks.consumer_group import GroupCursor, GroupMember
from pipeline.sinks.entries import FrameEntry, MalformedEntry, parse_event, parse_frame, parse_message
from pipeline.sinks.redis_client import Client
from pipeline.sinks.stream_reading import (
    Parser,
    Report,
    Skipped,
    SourcesEnded,
    StreamKind,
    StreamSet,
    XReadCursor,
    read_loop,
    redis_replies,
)

BLOCK_MS = 1000


def follow_frames(
    client: Client,
    keys: RedisKeys,
    source_id: str,
    report: Report,
    from_start: bool = False,
    stop_when_ended: bool = False,
    group: GroupMember | None = None,
) -> Iterator[FrameEntry]:
    """A source's frames as they arrive (from the first entry with `from_start`, else only new ones;
    through a consumer group with `group`). With `stop_when_ended`, iteration ends once the
    source's status says ended or failed and no entries remain unread."""
    return _read(client, keys, StreamKind.FRAMES, source_id, _frame, report, from_start, stop_when_ended, group)


def read_events(
    client: Client,
    keys: RedisKeys,
    source_id: str | None,
    report: Report,
    stop_when_ended: bool = False,
    group: GroupMember | None = None,
    from_start: bool = True,
) -> Iterator[dict]:
    """Events of one source (or every source's, `source_id` None) from the start of their streams
    (only new ones without `from_start`), then new ones as they come; through a consumer group with
    `group`. With `stop_when_ended`, iteration ends once the sources ended or failed and all is read."""
    return _read(client, keys, StreamKind.EVENTS, source_id, _event, report, from_start, stop_when_ended, group)


def follow_events_pubsub(client: Client, keys: RedisKeys, source_id: str | None, report: Report) -> Iterator[dict]:
    """Events as they are published, of one source or all (live only; nothing is replayed)."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        with redis_replies(f"subscribing to {keys.channel}"):
            pubsub.subscribe(keys.channel)
        while True:
            with redis_replies(f"listening on {keys.channel}"):
                message = pubsub.get_message(timeout=0.5)
            if not message or message["type"] != "message":
                continue
            try:
                event = parse_message(message["data"])
            except MalformedEntry as exc:
                report(Skipped(f"a message on {keys.channel}", str(exc)))
                continue
            if source_id is None or event["source"] == source_id:
                yield event
    finally:
        pubsub.close()


def written_yet(client: Client, keys: RedisKeys, kind: StreamKind, source_id: str | None) -> bool:
    """Whether the streams to read exist: the source's stream, or its status (`emotion:sources`);
    for every source (`source_id` None), any events stream."""
    with redis_replies(f"looking up source {source_id or '*'}"):
        if source_id is None:
            return next(client.scan_iter(match=kind.key(keys, "*"), count=1000), None) is not None
        return bool(client.exists(kind.key(keys, source_id)) or client.hexists(keys.sources, source_id))


def _read(client: Client, keys: RedisKeys, kind: StreamKind, source_id: str | None, parse: Parser, report: Report,
          from_start: bool, stop_when_ended: bool, group: GroupMember | None) -> Iterator:
    streams = StreamSet(client, keys, kind, source_id, report)
    cursor = (GroupCursor(client, keys, group, parse, report) if group
              else XReadCursor(client, parse, report, from_start))
    ended = SourcesEnded(client, keys, report) if stop_when_ended else None
    return read_loop(streams, cursor, ended, BLOCK_MS)


def _frame(stream: str, entry_id: str, fields: dict) -> FrameEntry:
    return parse_frame(entry_id, fields, stream)


def _event(stream: str, entry_id: str, fields: dict) -> dict:
    return parse_event(entry_id, fields, stream)
