"""Redis sink: turns one source's results and state changes into contract-v1 commands.

Commands go to a shared `RedisWriter`, which sends them in the background and rides out
outages. Entry ids are derived from presentation time (files) or wall-clock time (live
sources), so they are deterministic and strictly increasing per stream.
"""

from __future__ import annotations

import json
import time

import redis

from pipeline.core.contract import SCHEMA_VERSION, RedisKeys, StreamIdAllocator
from pipeline.core.errors import SinkError
from pipeline.core.states import SourceState
from pipeline.core.uris import mask_uri
from pipeline.engine.batch import FrameInfo
from pipeline.faces.events import FaceEvent
from pipeline.sinks.payload import FramePayload, frame_fields
from pipeline.sinks.redis_writer import Command, RedisWriter


def connect(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A client for `url`, checked with PING; raises SinkError naming the URL when unreachable."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        client.ping()
    except ValueError as exc:
        raise SinkError(f"invalid Redis URL {mask_uri(url)}: {exc}") from None
    except redis.AuthenticationError as exc:
        raise SinkError(f"Redis at {mask_uri(url)} refused the credentials: {exc}") from None
    except redis.RedisError as exc:
        raise SinkError(f"cannot reach Redis at {mask_uri(url)}: {exc}") from None
    return client


class RedisSink:
    """Frames, status and source_status events of one source, per the Redis contract v1."""

    def __init__(
        self,
        writer: RedisWriter,
        source_id: str,
        model_id: str,
        keys: RedisKeys,
        maxlen: int,
        source_uri: str,
        live: bool = False,
    ) -> None:
        self.writer = writer
        self.source_id = source_id
        self.model_id = model_id
        self.keys = keys
        self.maxlen = maxlen
        self.source_uri = mask_uri(source_uri)
        self.live = live
        self.frames = 0
        self.dropped = 0
        self.damaged_packets = 0
        self.reconnects = 0
        self.state = SourceState.CONNECTING
        self._frame_ids = StreamIdAllocator()
        self._event_ids = StreamIdAllocator()
        self._started = time.time()
        self._last: FrameInfo | None = None

    def write(self, payloads: list[FramePayload]) -> None:
        """Queue one XADD per frame and the refreshed status."""
        if not payloads:
            return
        commands: list[Command] = []
        for payload in payloads:
            frame = payload.frame
            clock = frame.wall_time if self.live else frame.pts
            entry_id = self._frame_ids.next(int(round(clock * 1000)))
            fields = frame_fields(payload, self.model_id)
            commands.append(["xadd", self.keys.frames(self.source_id), entry_id, fields, self.maxlen, frame.wall_time])
        self.frames += len(payloads)
        self._last = payloads[-1].frame
        commands.append(["hset", self.keys.sources, self.source_id, json.dumps(self._status())])
        self.writer.submit(commands)

    def status(self, state: SourceState, reason: str = "") -> None:
        """Record a state change: the status hash, a source_status event, and its pub/sub message."""
        self.state = state
        now = time.time()
        pts = self._last.pts if self._last else 0.0
        commands = [["hset", self.keys.sources, self.source_id, json.dumps(self._status(reason))]]
        commands += self._event_commands("source_status", pts, now, {"state": state.value, "reason": mask_uri(reason)})
        self.writer.submit(commands)

    def events(self, events: list[FaceEvent]) -> None:
        """Queue face events: each to the events stream and the pub/sub channel."""
        commands: list[Command] = []
        for event in events:
            commands += self._event_commands(event.type, event.pts, event.wall_time, event.fields)
        self.writer.submit(commands)

    def _event_commands(self, kind: str, pts: float, wall_time: float, fields: dict) -> list[Command]:
        """XADD (id from pts for files, wall time for live sources, so re-runs add nothing) and PUBLISH."""
        entry_id = self._event_ids.next(int(round((wall_time if self.live else pts) * 1000)))
        entry = {"v": SCHEMA_VERSION, "type": kind, "ts": str(int(wall_time * 1000)), "pts": f"{pts:.3f}"}
        entry |= {key: value if isinstance(value, str) else json.dumps(value) for key, value in fields.items()}
        message = {"v": SCHEMA_VERSION, "type": kind, "source": self.source_id, "ts": int(wall_time * 1000),
                   "pts": round(pts, 3), **fields}
        return [["xadd", self.keys.events(self.source_id), entry_id, entry, self.maxlen, None],
                ["publish", self.keys.channel, json.dumps(message)]]

    def _status(self, reason: str = "") -> dict:
        elapsed = max(time.time() - self._started, 1e-6)
        status = {
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
        return status
