"""One writer per source id at a time: an expiring claim in Redis, renewed while the run lives.

Before a run (`process` or `serve`) checks or writes a source's keys it claims the source:
`SET {prefix}:claim:{source} <holder> NX PX <ttl>`, atomic, so of two runs started at the
same moment exactly one gets it and the other is refused. A thread renews the claims every
third of the ttl; the run releases them at its end. A run that crashed stops renewing, so
its claims expire after the ttl and a later run is not blocked for long. While Redis refuses
writes (full, read-only) or is away, the run goes on and the thread takes the claim once it
can; a run that took it meanwhile is reported (`lost`), since their entries may mix.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import redis

from pipeline.core.contract import RedisKeys
from pipeline.core.errors import SinkError
from pipeline.sinks.redis_replies import ReplyKind, classify, describe

log = logging.getLogger(__name__)

MIN_TTL_S = 5.0

# Renew a claim that is ours, or take it back when it expired while Redis was away (1, 2);
# 0 when another run holds it now.
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not held then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def claim_ttl_s(redis_timeout_s: float) -> float:
    """How long a claim outlives its last renewal: three Redis timeouts, at least `MIN_TTL_S`."""
    return max(3 * redis_timeout_s, MIN_TTL_S)


class SourceTaken(SinkError):
    """Another run holds the claim on a source id."""


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: the value of the claim key, as JSON."""

    command: str
    host: str
    pid: int
    since_ms: int
    token: str
    job: str = ""
    """The fleet job this run is part of ("" for a run of its own): its runs may take over each other's claims."""

    @classmethod
    def for_this_run(cls, command: str, job: str = "") -> Holder:
        """A holder naming this process, unique to this run (and naming its fleet `job`, if any)."""
        return cls(command, socket.gethostname(), os.getpid(), int(time.time() * 1000), uuid.uuid4().hex, job)

    @classmethod
    def parse(cls, raw: bytes | None) -> Holder | None:
        """The holder in a claim key's value; None when it is not one."""
        try:
            return cls(**json.loads(raw)) if raw else None
        except (TypeError, ValueError):
            return None

    def value(self) -> str:
        """The claim key's value."""
        return json.dumps(vars(self), sort_keys=True)

    def describe(self) -> str:
        """E.g. "process pid 123 on host-a since 12:00:01" (", fleet job serve-1a2b3c" for a fleet's actor)."""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since_ms / 1000))
        job = f", fleet job {self.job}" if self.job else ""
        return f"{self.command} pid {self.pid} on {self.host} since {since}{job}"


class SourceClaims:
    """The claims of one run; `claim` each id before touching its keys, `release` at the end."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, command: str, ttl_s: float, job: str = "") -> None:
        """`client` is this object's own (its thread uses it); `command` names the run for other runs; a run
        of fleet `job` takes over claims another run of the same job holds (its actor was lost)."""
        self.client = client
        self.keys = keys
        self.ttl_ms = int(ttl_s * 1000)
        self.holder = Holder.for_this_run(command, job)
        self.held: list[str] = []
        """Ids this run claimed (or claims as soon as Redis takes writes again)."""
        self.provisional: set[str] = set()
        """Held ids whose claim Redis has not stored yet (it refused writes; nobody else held them)."""
        self.lost: dict[str, str] = {}
        """Source ids another run took while this one could not renew, with that run's description."""
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, source_id: str) -> None:
        """Claim `source_id`; SourceTaken (one line, naming it and its holder) when another run holds it."""
        key = self.keys.claim(source_id)
        try:
            taken = self.client.set(key, self.holder.value(), nx=True, px=self.ttl_ms)
        except redis.ResponseError as exc:
            if classify(exc) is not ReplyKind.REFUSED:
                raise
            taken = self.client.get(key) is None  # Redis refuses SET NX even when the key is held: look
            if taken:
                log.warning("source %s: Redis refuses writes for now (%s); the run claims it once Redis takes "
                            "them", source_id, describe(exc))
                self.provisional.add(source_id)  # the renewing thread takes it when it can, or reports who did
        if taken:
            self.held.append(source_id)
            self._check_other_layout(source_id)
            return
        holder = Holder.parse(self.client.get(key))
        if holder is not None and self.holder.job and holder.job == self.holder.job:
            self.client.set(key, self.holder.value(), px=self.ttl_ms)  # the job moved the source here
            log.info("source %s: taken over from %s (same fleet job)", source_id, holder.describe())
            self.held.append(source_id)
            return
        by = f" ({holder.describe()})" if holder else ""
        raise SourceTaken(f"source {source_id}: another run is writing it{by}; wait for it to end, or use another "
                          f"source id (a crashed run's claim {key} expires within {self.ttl_ms / 1000:g}s)")

    def _check_other_layout(self, source_id: str) -> None:
        """SourceTaken (this claim given back) when a run of the other contract version claims the id: both layouts
        share the status hash, so two runs would write one source's status. Two runs that claim at the same
        moment may both be refused: neither writes, nothing mixes."""
        other_key = self.keys.other_layout().claim(source_id)
        holder = Holder.parse(self.client.get(other_key))
        if holder is None or (self.holder.job and holder.job == self.holder.job):
            return
        self.drop(source_id)
        raise SourceTaken(f"source {source_id}: a contract-{self.keys.other_layout().version} run is writing it "
                          f"({holder.describe()}); wait for it to end, or use another source id")

    def keep(self) -> None:
        """Renew the held claims on a thread every third of the ttl, until `release`."""
        self._thread = threading.Thread(target=self._keep, name="source-claims", daemon=True)
        self._thread.start()

    def drop(self, source_id: str) -> None:
        """Release the claim on one id (before `keep`), if this run holds it."""
        if source_id in self.held:
            self.held.remove(source_id)
            self._release_one(source_id)

    def release(self) -> None:
        """Stop renewing, check each claim a last time (a run that took one is named in `lost`), and delete
        the claims this run still holds (those that expired stay gone)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for source_id in self.held:
            if source_id not in self.lost:
                self._renew_one(source_id)
        for source_id in self.held:
            self._release_one(source_id)
        self.held = []
        self.client.close()

    def _release_one(self, source_id: str) -> None:
        try:
            self._release(keys=[self.keys.claim(source_id)], args=[self.holder.value()])
        except redis.RedisError as exc:  # it expires on its own
            log.warning("could not release the claim on %s (%s); it expires within %gs", source_id, exc,
                        self.ttl_ms / 1000)

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            for source_id in self.held:
                if source_id not in self.lost:
                    self._renew_one(source_id)

    def _renew_one(self, source_id: str) -> None:
        key = self.keys.claim(source_id)
        try:
            renewed = self._renew(keys=[key], args=[self.holder.value(), self.ttl_ms])
            if renewed:
                self.provisional.discard(source_id)
            else:
                holder = Holder.parse(self.client.get(key))
                self.lost[source_id] = holder.describe() if holder else "another run"
                log.error("source %s: %s took its claim while this run could not renew it; their entries may mix",
                          source_id, self.lost[source_id])
        except redis.RedisError:
            pass  # Redis is away: the writer reports the outage; the claim is taken back when it answers
