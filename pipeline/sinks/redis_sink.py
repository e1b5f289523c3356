"""Redis sink: turns one source's results and state changes into commands of the Redis contract (v1 or v2).

Commands go to a shared `RedisWriter`, which sends them in the background and rides out
outages. Entry ids are derived from presentation time (files) or wall-clock time (live
sources), so they are deterministic and strictly increasing per stream. A file run that
resumes an earlier run of the same record sends nothing for the entries Redis holds already
(not even their pub/sub messages) and leaves the status alone until it adds something.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlparse

import redis

from pipeline.core.contract import RedisKeys, StreamIdAllocator
from pipeline.core.errors import ConfigError, SinkError
from pipeline.core.states import SourceState
from pipeline.core.uris import mask_uri
from pipeline.engine.batch import FrameInfo
from pipeline.sinks.payload import EventRecord, FramePayload, event_fields, frame_fields
from pipeline.sinks.redis_client import Client, open_client
from pipeline.sinks.redis_resume import ResumePoint, parse_stream_id
from pipeline.sinks.redis_writer import Command, RedisWriter
from pipeline.sinks.run_record import RunRecord


class RedisUnreachable(SinkError):
    """Redis did not answer: a run may go on without it (files only) or wait for it."""


def check_redis_url(url: str, cluster: bool = False) -> None:
    """ConfigError for a URL redis-py would misread (a database that is not a number means db 0 to it), or a
    database other than 0 on a cluster (`cluster`), which has no other."""
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 - parsing the port raises for a malformed host or port
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {mask_uri(url)}: {exc}") from None
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"invalid Redis URL {mask_uri(url)}: it must start with redis://, rediss:// or unix://")
    databases = parse_qs(parsed.query).get("db", [])
    if parsed.scheme != "unix" and parsed.path.strip("/"):
        databases.append(parsed.path.strip("/"))
    for database in databases:
        if not database.isdigit():
            raise ConfigError(f"invalid Redis URL {mask_uri(url)}: database {database!r} is not a number "
                              "(e.g. redis://host:6379/0)")
        if cluster and int(database) != 0:
            raise ConfigError(f"invalid Redis URL {mask_uri(url)}: a Redis Cluster (redis.cluster: true) has only "
                              f"database 0, not {database}")


def connect(url: str, timeout_s: float = 5.0, cluster: bool = False) -> Client:
    """A client for `url` (a Redis Cluster's with `cluster`), checked with PING. ConfigError for a malformed URL,
    SinkError naming the URL (credentials masked) when Redis refuses the client or is not what `cluster` says,
    RedisUnreachable when it does not answer."""
    check_redis_url(url, cluster)
    try:
        client = open_client(url, timeout_s, cluster)
        client.ping()
        if not cluster:
            _refuse_cluster_node(client, url)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {mask_uri(url)}: {exc}") from None
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        raise SinkError(f"Redis at {mask_uri(url)} refused the connection: {mask_uri(str(exc))}") from None
    except redis.RedisError as exc:
        if cluster and "Cluster mode is not enabled" in str(exc):
            raise SinkError(f"Redis at {mask_uri(url)} is not a Redis Cluster node: set redis.cluster: false (or "
                            "drop --redis-cluster)") from None
        raise RedisUnreachable(f"cannot reach Redis at {mask_uri(url)}: {exc}") from None
    return client


def _refuse_cluster_node(client: redis.Redis, url: str) -> None:
    """SinkError when `client` talks to a node of a Redis Cluster (it would be redirected for most keys)."""
    try:
        enabled = client.info("cluster").get("cluster_enabled")
    except redis.ResponseError:  # INFO not permitted: nothing to tell
        return
    if enabled:
        raise SinkError(f"Redis at {mask_uri(url)} is a Redis Cluster node: set redis.cluster: true and "
                        "redis.contract: 2 (--redis-cluster --contract 2)")


class RedisSink:
    """Frames, status and source_status events of one source, per the Redis contract (`keys.version`)."""

    def __init__(
        self,
        writer: RedisWriter,
        source_id: str,
        model_id: str,
        keys: RedisKeys,
        maxlen: int,
        source_uri: str,
        live: bool = False,
        run: RunRecord | None = None,
        resume: ResumePoint | None = None,
        node: str | None = None,
    ) -> None:
        """`run` is published in the status; entries up to `resume` are already in Redis; `node` (the fleet
        node writing the source) too."""
        self.writer = writer
        self.source_id = source_id
        self.model_id = model_id
        self.keys = keys
        self.maxlen = maxlen
        self.source_uri = mask_uri(source_uri)
        self.live = live
        self.run = run
        self.resume = resume
        self.node = node
        self.skipped = 0
        """Frames whose entries an earlier run of the same record wrote (not sent again)."""
        self.frames = 0
        self.dropped = 0
        self.damaged_packets = 0
        self.reconnects = 0
        self.state = SourceState.CONNECTING
        self._frame_ids = StreamIdAllocator()
        self._events_top = resume.events_after if resume else (0, 0)
        self._started = time.time()
        self._last: FrameInfo | None = None
        self._adding = resume is None
        """False while every entry so far was there already: the earlier run's status stays."""

    def write(self, payloads: list[FramePayload]) -> None:
        """Queue one XADD per frame and the refreshed status."""
        if not payloads:
            return
        commands: list[Command] = []
        for payload in payloads:
            frame = payload.frame
            clock = frame.wall_time if self.live else frame.pts
            entry_id = self._frame_ids.next(int(round(clock * 1000)))
            if self.resume and parse_stream_id(entry_id) <= self.resume.frames_after:
                self.skipped += 1
                continue
            self._adding = True
            fields = frame_fields(payload, self.model_id, self.keys.schema)
            commands.append(["xadd", self.keys.frames(self.source_id), entry_id, fields, self.maxlen, frame.wall_time])
        self.frames += len(payloads)
        self._last = payloads[-1].frame
        if self._adding:
            commands.append(["hset", self.keys.sources, self.source_id, json.dumps(self._status())])
        self.writer.submit(commands)

    def status(self, state: SourceState, reason: str, event: EventRecord) -> None:
        """Record a state change: the status hash, its source_status `event` and the event's pub/sub message."""
        self.state = state
        event = self._event_commands(event)
        if self._adding:
            self.writer.submit([["hset", self.keys.sources, self.source_id, json.dumps(self._status(reason))], *event])

    def incomplete(self, reason: str) -> None:
        """Record in the status (only there: the events stream keeps what happened to the source) that
        Redis lacks some of the source's entries: the state becomes failed, with the reason."""
        self.state = SourceState.FAILED
        self.writer.submit([["hset", self.keys.sources, self.source_id, json.dumps(self._status(reason))]])

    def placed(self, event_id: str, kind: str) -> str:
        """The id an event of type `kind` goes under: its own, unless an earlier run of this record left events after
        it but not it (a resumed run sees an event the interrupted one never wrote): then the next id after all."""
        if self.resume is None:
            return event_id
        if self.resume.events_written.get(event_id) == kind or parse_stream_id(event_id) > self._events_top:
            self._events_top = max(self._events_top, parse_stream_id(event_id))
            return event_id
        ms, seq = self._events_top
        self._events_top = (ms, seq + 1)
        return f"{ms}-{seq + 1}"

    def events(self, events: list[EventRecord]) -> None:
        """Queue face events: each to the events stream and the pub/sub channel."""
        commands: list[Command] = []
        for event in events:
            commands += self._event_commands(event)
        self.writer.submit(commands)

    def _event_commands(self, record: EventRecord) -> list[Command]:
        """XADD under the record's id and PUBLISH of the record; none for an event an earlier run of the same
        record wrote."""
        if self.resume and self.resume.events_written.get(record.event_id) == record.event.type:
            return []
        self._adding = True
        return [["xadd", self.keys.events(self.source_id), record.event_id, event_fields(record, self.keys.schema),
                 self.maxlen, None],
                ["publish", self.keys.channel, json.dumps(record.to_json(self.keys.schema))]]

    def _status(self, reason: str = "") -> dict:
        elapsed = max(time.time() - self._started, 1e-6)
        status = {
            "v": self.keys.schema,
            "source": self.source_id,
            "state": self.state.value,
            "fps": round(self.frames / elapsed, 2),
            "frames": self.frames,
            "dropped": self.dropped,
            "damaged_packets": self.damaged_packets,
            "reconnects": self.reconnects,
            "uri": self.source_uri,
        }
        if reason:
            status["reason"] = mask_uri(reason)
        if self._last is not None:
            status["last_ts"] = int(self._last.wall_time * 1000)
        if self.run is not None:
            status["run"] = {"v": self.keys.schema} | self.run.to_json()
        if self.node is not None:
            status["node"] = self.node
        return status
