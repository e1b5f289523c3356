"""The `subscribe` command: follow frames or events."""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
from typing import TYPE_CHECKING

from pipeline.cli.common import command, redis_flags, redis_overrides
from pipeline.core.config import load_config
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import ConfigError, EmotionStreamError
from pipeline.core.source_ids import check_source_id

if TYPE_CHECKING:
    from pipeline.sinks.stream_reading import Skipped


def add_subscribe(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "subscribe", _run_subscribe, "follow a source's frames or events live")
    parser.add_argument("source", nargs="?", help="source id (or --source)")
    parser.add_argument("--source", dest="source_flag", help="source id")
    parser.add_argument("--all", action="store_true", help="events of every source")
    parser.add_argument("--events", action="store_true", help="events instead of frames")
    parser.add_argument("--type", action="append", help="only events of this type (repeatable)")
    parser.add_argument("--group", help="consumer group: at-least-once delivery with acknowledgements")
    parser.add_argument("--consumer", default=socket.gethostname(), help="consumer name in --group (default: host)")
    parser.add_argument("--claim-idle", type=float, default=30.0,
                        help="--group: take over entries another consumer left unacknowledged this long (s)")
    parser.add_argument("--redis", help="Redis URL (default: the config's redis.url, else $REDIS_URL)")
    parser.add_argument("--prefix", help="key prefix (redis.prefix, default emotion)")
    parser.add_argument("--config", help="pipeline YAML whose redis section to read (default: configs/pipeline.yaml)")
    redis_flags(parser)
    parser.add_argument("--from-start", action="store_true", help="replay the stream from its first entry")
    parser.add_argument("--json", action="store_true", help="print each entry as one JSON object")
    parser.add_argument("--until-ended", action="store_true", help="exit once the source(s) ended and all is read")


def _run_subscribe(args: argparse.Namespace) -> int:
    from pipeline.sinks.consumer_group import GroupMember
    from pipeline.sinks.redis_sink import connect
    from pipeline.sinks.stream_reading import StreamKind
    from pipeline.sinks.subscriber import follow_frames, written_yet

    settings = load_config(args.config, {"redis.url": args.redis, "redis.prefix": args.prefix,
                                         **redis_overrides(args)}).redis
    if not settings.url:
        raise EmotionStreamError("no Redis given: pass --redis URL, set REDIS_URL or redis.url in --config")
    source = None if args.events and args.all else args.source_flag or args.source
    if not source and not (args.events and args.all):
        raise EmotionStreamError("name a source (SOURCE or --source S), or use --events --all")
    if source:
        check_source_id(source)
    if not math.isfinite(args.claim_idle) or args.claim_idle < 0:
        raise ConfigError(f"--claim-idle must be a number of seconds, 0 or more, got {args.claim_idle}")
    if args.group is not None and not args.group.strip():
        raise ConfigError("--group must name a consumer group (an empty name would read without one, acknowledging "
                          "nothing)")
    group = GroupMember(args.group, args.consumer, int(args.claim_idle * 1000)) if args.group else None
    client = connect(settings.url, settings.timeout_s, settings.cluster)
    keys = RedisKeys.of(settings)
    kind = StreamKind.EVENTS if args.events else StreamKind.FRAMES
    if not written_yet(client, keys, kind, source):
        _say(f"nothing written yet to {kind.key(keys, source or '*')}; waiting for it (Ctrl-C to stop)")
    if args.events:
        return _print_events(client, keys, source, group, args)
    for entry in follow_frames(client, keys, source, _report, args.from_start, args.until_ended, group):
        print(json.dumps(entry.to_json(), allow_nan=False) if args.json else entry.format(), flush=True)
    return 0


def _print_events(client, keys: RedisKeys, source: str | None, group, args: argparse.Namespace) -> int:
    from pipeline.sinks.subscriber import follow_events_pubsub, read_events

    if group or args.from_start or args.until_ended:  # the streams know when a source ended; pub/sub does not
        events = read_events(client, keys, source, _report, args.until_ended, group, args.from_start)
    else:
        events = follow_events_pubsub(client, keys, source, _report)
    for event in events:
        if args.type and event["type"] not in args.type:
            continue
        print(json.dumps(event, allow_nan=False) if args.json else _event_line(event), flush=True)
    return 0


def _report(skipped: Skipped) -> None:
    _say(skipped.describe())


def _say(line: str) -> None:
    print(f"emotion-stream: {line}", file=sys.stderr, flush=True)


def _event_line(event: dict) -> str:
    details = " ".join(f"{key}={value}" for key, value in event.items() if key not in ("v", "type", "source", "ts", "pts"))
    return f"{event['source']:<12} {float(event['pts']):9.3f}s  {event['type']:<16} {details}"
