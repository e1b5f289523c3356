"""The drivers' own use of Redis: checked before any actor starts, and `failed` in `emotion:sources` for a camera no
actor has room for (the actors write every other status)."""

from __future__ import annotations

import json
import logging

import redis

from pipeline.core.config import PipelineConfig, SourceSpec
from pipeline.core.contract import RedisKeys
from pipeline.core.states import SourceState
from pipeline.core.uris import mask_uri
from pipeline.sinks.redis_sink import RedisUnreachable, connect
from pipeline.sinks.source_claims import Holder

log = logging.getLogger(__name__)

FINAL_STATES = frozenset(state.value for state in SourceState if state.final)


def check_redis(config: PipelineConfig) -> redis.Redis | None:
    """Connect as the actors will, before any of them starts: refused credentials or the wrong kind of Redis raise
    SinkError (exit 5) and a malformed URL ConfigError; None without Redis or while it does not answer (the actors
    then keep their results until it does, as on one machine)."""
    if not config.redis.url:
        return None
    try:
        return connect(config.redis.url, config.redis.timeout_s, config.redis.cluster)
    except RedisUnreachable as exc:
        log.warning("%s; the actors keep their results until it answers", exc)
        return None


class CameraStatuses:
    """The controller's Redis client, checked before Ray starts."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, job: str = "") -> None:
        self.client = client
        self.keys = keys
        self.job = job

    @classmethod
    def check(cls, config: PipelineConfig) -> CameraStatuses | None:
        """The controller's client (see `check_redis`); None without one."""
        client = check_redis(config)
        return cls(client, RedisKeys.of(config.redis)) if client is not None else None

    def for_job(self, job: str) -> CameraStatuses:
        """The same client, writing for fleet `job` (whose actors' claims it may write over)."""
        return CameraStatuses(self.client, self.keys, job)

    def final_status(self, camera_id: str, node: str) -> dict | None:
        """The camera's status in `emotion:sources` when the actor at `node` wrote it and it is final (ended or
        failed): what that actor did last, even when the controller's last look at it came before."""
        try:
            raw = self.client.hget(self.keys.sources, camera_id)
            status = json.loads(raw) if raw else None
        except (redis.RedisError, ValueError) as exc:
            log.warning("could not read the status of %s in Redis (%s)", camera_id, exc)
            return None
        final = isinstance(status, dict) and status.get("node") == node and status.get("state") in FINAL_STATES
        return status if final else None

    def failed(self, camera: SourceSpec, reason: str, frames: int) -> None:
        """Record `camera` failed with `reason`, unless a run of another job holds its claim (it is that run's)."""
        try:
            holder = Holder.parse(self.client.get(self.keys.claim(camera.id)))
            if holder is not None and holder.job != self.job:
                return
            status = {"v": self.keys.schema, "source": camera.id, "state": SourceState.FAILED.value,
                      "reason": mask_uri(reason), "fps": 0.0, "frames": frames,
                      "dropped": 0, "damaged_packets": 0, "reconnects": 0, "uri": mask_uri(camera.uri)}
            self.client.hset(self.keys.sources, camera.id, json.dumps(status))
        except redis.RedisError as exc:
            log.warning("could not record %s as failed in Redis (%s)", camera.id, exc)
