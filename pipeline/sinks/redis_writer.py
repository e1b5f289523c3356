"""Background Redis writer that survives outages and refusals: buffers, spills to disk, replays in order.

Sinks hand it commands; a thread sends them in batches, each batch one MULTI/EXEC
transaction, so Redis takes a batch whole or refuses it whole. To a Redis Cluster a batch
goes as one transaction per hash slot (contract v2 keeps a source's keys in one slot; the
status hash has its own), and its PUBLISHes one by one (a cluster transaction holds keys of
one slot only); a slot whose node is away waits while the others are written. When Redis is unreachable or
refuses writes for now (out of memory, read-only, failed persistence) the commands wait (in
memory up to a bound, then on disk), the problem is logged once, and they are retried in
their original order; what is still waiting when the writer closes stays in the spill file
for the next run. A command Redis rejects for good (a key of another type, no permission)
is kept in the rejected file, counted per key and logged once per kind of error. Stream
entries carry explicit ids, so an entry that reached Redis before a connection broke is
rejected on replay, not duplicated.
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
from pipeline.sinks.redis_client import Client, open_client, slot_of
from pipeline.sinks.redis_replies import RejectedCommands, ReplyKind, classify, describe, error_code
from pipeline.sinks.spill import SpillBuffer

log = logging.getLogger(__name__)

OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError,
                 redis.exceptions.ClusterError, redis.exceptions.RedisClusterException)
"""Redis is away (a cluster client also raises its own exceptions when it cannot reach the nodes it needs)."""

Command = list
"""["xadd", key, id, fields, maxlen, wall_time] | ["hset", key, field, value] | ["publish", channel, message]"""


class RedisWriter:
    """Executes commands in order on its own thread; `close` flushes what it can and spills the rest."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        buffer_entries: int = 20_000,
        spill_path: Path | None = None,
        batch: int = 500,
        on_written: Callable[[list[Command], float], None] | None = None,
        cluster: bool = False,
    ) -> None:
        """Commands Redis rejects for good go to `<spill name>-rejected.jsonl` beside the spill file; `cluster`:
        `url` names a node of a Redis Cluster."""
        self.url = url
        self.timeout_s = timeout_s
        self.cluster = cluster
        self._client: Client | None = None
        spill_path = spill_path or Path(f"runs/spill/redis-{id(self)}.jsonl")
        self.buffer = SpillBuffer(buffer_entries, spill_path)
        self.rejected_file = RejectedCommands(spill_path.with_name(f"{spill_path.stem}-rejected.jsonl"))
        self.batch = batch
        self.on_written = on_written
        self.written: Counter[str] = Counter()
        """Stream entries added, per stream key."""
        self.duplicates: Counter[str] = Counter()
        """Stream entries Redis already held (rejected by id), per stream key."""
        self.rejected: Counter[str] = Counter()
        """Commands Redis rejected for good (kept in `rejected_file`), per key."""
        self.rejections: dict[str, str] = {}
        """The first rejection per key, as Redis worded it."""
        self._logged_codes: set[str] = set()
        self.outages = 0
        self.last_problem: str | None = None
        """Why Redis last did not take the commands (unreachable, or refusing writes)."""
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

    def flush(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Wait until everything queued is written, for at most `timeout_s` or until `stop` is set;
        False if Redis did not take it in time."""
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline and not (stop and stop.is_set()):
            self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        return not self.pending

    def close(self, timeout_s: float = 5.0) -> int:
        """Flush for up to `timeout_s`, stop the thread, keep what is left in the spill file for the
        next run; returns the commands left unwritten."""
        self.flush(timeout_s)
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=timeout_s + 1)
        if self._client is not None:
            self._client.close()
        self.buffer.persist()
        if self.pending:
            log.error("%d commands were not written: Redis at %s %s; they are kept in %s for the next run",
                      self.pending, mask_uri(self.url), self.last_problem, self.buffer.path)
        return self.pending

    def unwritten(self) -> Counter[str]:
        """Commands still waiting, per key (reads the spill file: call once, at the end)."""
        return Counter(command[1] for command in self.buffer.items())

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
            waiting, refusal = self._send(commands)
            self.buffer.settle(len(commands), waiting)
            if refusal is None:
                self._came_back()
                delay = 0.2
                continue
            self._went_down(refusal)
            if self._closing.is_set():
                return
            if self.cluster and len(waiting) < len(commands):  # other nodes took theirs: go on at once
                continue
            self._closing.wait(delay)
            delay = min(delay * 2, 5.0)

    @property
    def client(self) -> Client:
        """The client, made on first use (a cluster client connects when it is made)."""
        if self._client is None:
            self._client = open_client(self.url, self.timeout_s, self.cluster)
        return self._client

    def _send(self, commands: list[Command]) -> tuple[list[Command], BaseException | None]:
        """Send one batch: the commands that must wait (in order) and why, or ([], None)."""
        now = time.time()
        waiting: list[int] = []
        problem: BaseException | None = None
        for group in self._groups(commands):
            try:
                done, refusal = self._send_group([commands[number] for number in group], now)
            except OUTAGE_ERRORS as exc:
                done, refusal = 0, exc
            waiting += group[done:]
            problem = problem or refusal
        return [commands[number] for number in sorted(waiting)], problem

    def _groups(self, commands: list[Command]) -> list[list[int]]:
        """The numbers of the commands sent together: all of them to one server; to a cluster, those of each
        hash slot, and the PUBLISHes."""
        if not self.cluster:
            return [list(range(len(commands)))]
        groups: dict[int | None, list[int]] = {}
        for number, command in enumerate(commands):
            groups.setdefault(None if command[0] == "publish" else slot_of(command[1]), []).append(number)
        return list(groups.values())

    def _send_group(self, commands: list[Command], now: float) -> tuple[int, BaseException | None]:
        """Send commands of one group: (how many of its first commands are settled, why the rest must wait or
        None)."""
        try:
            replies = self._execute(commands, now, transaction=True)
        except redis.ResponseError as exc:  # the transaction was refused whole: nothing of it ran
            if classify(exc) is ReplyKind.REFUSED:
                return 0, exc
            replies = self._execute(commands, now, transaction=False)  # which of them does Redis reject?
        for number, (command, reply) in enumerate(zip(commands, replies)):
            if isinstance(reply, OUTAGE_ERRORS):
                self._report_written(commands[:number], now)
                return number, reply
            if isinstance(reply, redis.ResponseError):
                kind = classify(reply)
                if kind is ReplyKind.REFUSED:
                    self._report_written(commands[:number], now)
                    return number, reply
                if kind is ReplyKind.DUPLICATE:
                    self.duplicates[command[1]] += 1
                else:
                    self._reject(command, reply)
            elif command[0] == "xadd":
                self.written[command[1]] += 1
        self._report_written(commands, now)
        return len(commands), None

    def _execute(self, commands: list[Command], now: float, transaction: bool) -> list:
        if self.cluster and commands[0][0] == "publish":  # a cluster pipeline takes no PUBLISH
            return self._publish_each(commands)
        pipe = self.client.pipeline(transaction=transaction)
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
        return pipe.execute(raise_on_error=False)

    def _publish_each(self, commands: list[Command]) -> list:
        """PUBLISH one by one (the cluster spreads each message to every node); the replies, an error the last."""
        replies: list = []
        for command in commands:
            try:
                replies.append(self.client.publish(command[1], command[2]))
            except (redis.ResponseError, *OUTAGE_ERRORS) as exc:
                replies.append(exc)
                break
        return replies

    def _reject(self, command: Command, error: redis.ResponseError) -> None:
        key = command[1]
        self.rejected[key] += 1
        self.rejected_file.keep(command, error)
        self.rejections.setdefault(key, f"{command[0].upper()} {key}: {describe(error)}")
        code = error_code(error)
        if code not in self._logged_codes:  # once per kind of error, not once per command
            self._logged_codes.add(code)
            log.error("Redis at %s rejected %s; this and every command it rejects are kept in %s",
                      mask_uri(self.url), self.rejections[key], self.rejected_file.path)

    def _report_written(self, commands: list[Command], now: float) -> None:
        if self.on_written and commands:
            self.on_written(commands, now)

    def _went_down(self, exc: BaseException) -> None:
        if isinstance(exc, redis.ResponseError):
            self.last_problem = mask_uri(f"refuses writes ({describe(exc)})")
        else:
            self.last_problem = mask_uri(f"is unreachable ({exc})")
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.error("Redis at %s %s; buffering results (memory, then %s) and retrying",
                      mask_uri(self.url), self.last_problem, self.buffer.path)

    def _came_back(self) -> None:
        if self.down_since is not None:
            log.warning(
                "Redis at %s takes writes again after %.1fs; replaying %d buffered commands",
                mask_uri(self.url), time.monotonic() - self.down_since, self.pending,
            )
            self.down_since = None
