"""Background Redis writer that survives outages: buffers, spills to disk, replays in order.

Sinks hand it commands; a thread sends them in pipelined batches. When Redis is unreachable
the commands wait (in memory up to a bound, then on disk) and the outage is logged once;
when Redis returns they are sent in their original order. Stream entries carry explicit ids,
so an entry that reached Redis before a connection broke is rejected on replay, not duplicated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from pipeline.core.uris import mask_uri
from pipeline.sinks.spill import SpillBuffer

log = logging.getLogger(__name__)

_DUPLICATE_ID = "equal or smaller than the target stream top item"
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)

Command = list
"""["xadd", key, id, fields, maxlen, wall_time] | ["hset", key, field, value] | ["publish", channel, message]"""


class RedisWriter:
    """Executes commands in order on its own thread; `close` flushes what it can."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        buffer_entries: int = 20_000,
        spill_path: Path | None = None,
        batch: int = 500,
        on_written: Callable[[list[Command], float], None] | None = None,
    ) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.buffer = SpillBuffer(buffer_entries, spill_path or Path(f"runs/spill/redis-{id(self)}.jsonl"))
        self.batch = batch
        self.on_written = on_written
        self.written: Counter[str] = Counter()
        """Stream entries added, per stream key."""
        self.duplicates: Counter[str] = Counter()
        """Stream entries Redis already held (rejected by id), per stream key."""
        self.errors = 0
        self.outages = 0
        self.down_since: float | None = None
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="redis-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Commands not yet acknowledged by Redis."""
        return len(self.buffer)

    def submit(self, commands: list[Command]) -> None:
        """Queue commands; never blocks on Redis."""
        if commands:
            self._idle.clear()
            self.buffer.extend(commands)
            self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued is written; False if Redis did not take it in time."""
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        return not self.pending

    def close(self, timeout_s: float = 5.0) -> int:
        """Flush for up to `timeout_s`, stop the thread; returns commands left unwritten."""
        self.flush(timeout_s)
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=timeout_s + 1)
        self.client.close()
        return self.pending

    def _run(self) -> None:
        delay = 0.2
        while True:
            commands = self.buffer.peek(self.batch)
            if not commands:
                self._idle.set()
                if self._closing.is_set():
                    return
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                self._send(commands)
            except OUTAGE_ERRORS as exc:
                self._went_down(exc)
                if self._closing.is_set():
                    return
                self._closing.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._came_back()
            delay = 0.2
            self.buffer.drop(len(commands))

    def _send(self, commands: list[Command]) -> None:
        pipe = self.client.pipeline(transaction=False)
        now = time.time()
        for command in commands:
            kind = command[0]
            if kind == "xadd":
                _, key, entry_id, fields, maxlen, wall_time = command
                if wall_time is not None:
                    fields = fields | {"lat": str(int((now - wall_time) * 1000))}
                pipe.xadd(key, fields, id=entry_id, maxlen=maxlen, approximate=True)
            elif kind == "hset":
                pipe.hset(command[1], command[2], command[3])
            elif kind == "publish":
                pipe.publish(command[1], command[2])
        replies = pipe.execute(raise_on_error=False)
        for command, reply in zip(commands, replies):
            if isinstance(reply, OUTAGE_ERRORS):
                raise reply
            if isinstance(reply, redis.ResponseError):
                if _DUPLICATE_ID in str(reply):
                    self.duplicates[command[1]] += 1
                else:
                    self.errors += 1
                    log.error("Redis rejected %s %s: %s", command[0], command[1], reply)
            elif command[0] == "xadd":
                self.written[command[1]] += 1
        if self.on_written:
            self.on_written(commands, now)

    def _went_down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.error(
                "Redis at %s unreachable (%s); buffering results (memory, then %s) until it returns",
                mask_uri(self.url), exc, self.buffer.path,
            )

    def _came_back(self) -> None:
        if self.down_since is not None:
            log.warning(
                "Redis at %s is back after %.1fs; replaying %d buffered commands",
                mask_uri(self.url), time.monotonic() - self.down_since, self.pending,
            )
            self.down_since = None
