"""Redis sink: one stream entry per processed frame, written with one pipeline per batch."""

from __future__ import annotations

import json
import logging
import time

import redis

from pipeline.contract import RedisKeys, StreamIdAllocator, frame_fields
from pipeline.errors import SinkError
from pipeline.types import FrameResult

log = logging.getLogger(__name__)

_DUPLICATE_ID = "equal or smaller than the target stream top item"


def connect(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A client for `url`, checked with PING; raises SinkError naming the URL when unreachable."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        client.ping()
    except ValueError as exc:
        raise SinkError(f"invalid Redis URL {mask_url(url)}: {exc}") from None
    except redis.AuthenticationError as exc:
        raise SinkError(f"Redis at {mask_url(url)} refused the credentials: {exc}") from None
    except redis.RedisError as exc:
        raise SinkError(f"cannot reach Redis at {mask_url(url)}: {exc}") from None
    return client


def mask_url(url: str) -> str:
    """`url` with any password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':' if ':' in credentials else ''}***@{host}"


class RedisSink:
    """Writes frame entries per the Redis contract v1 and keeps the source's status hash.

    Entry ids come from presentation times (see `StreamIdAllocator`); entries Redis already
    holds are rejected by id and counted in `duplicates`, never written twice.
    """

    def __init__(
        self,
        client: redis.Redis,
        source_id: str,
        model_id: str,
        keys: RedisKeys,
        maxlen: int,
        source_uri: str,
    ) -> None:
        self.client = client
        self.source_id = source_id
        self.model_id = model_id
        self.keys = keys
        self.maxlen = maxlen
        self.source_uri = mask_url(source_uri)
        self.written = 0
        self.duplicates = 0
        self._ids = StreamIdAllocator()
        self._frames = 0
        self._started = time.time()

    def write(self, results: list[FrameResult]) -> None:
        """XADD every result in one round trip; repeats of entries already stored are skipped."""
        if not results:
            return
        stream = self.keys.frames(self.source_id)
        pipe = self.client.pipeline(transaction=False)
        for result in results:
            entry_id = self._ids.next(int(round(result.pts * 1000)))
            pipe.xadd(stream, frame_fields(result, self.model_id), id=entry_id, maxlen=self.maxlen, approximate=True)
        self._frames += len(results)
        pipe.hset(self.keys.sources, self.source_id, json.dumps(self._status("live", results[-1])))
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise SinkError(f"Redis write failed for {self.source_id}: {exc}") from None
        for reply in replies[:-1]:
            if isinstance(reply, redis.ResponseError):
                if _DUPLICATE_ID not in str(reply):
                    raise SinkError(f"Redis rejected an entry for {self.source_id}: {reply}")
                self.duplicates += 1
            else:
                self.written += 1

    def finish(self, state: str) -> None:
        """Record the source's final state (ended or failed) in the status hash."""
        try:
            self.client.hset(self.keys.sources, self.source_id, json.dumps(self._status(state, None)))
        except redis.RedisError as exc:
            raise SinkError(f"Redis write failed for {self.source_id}: {exc}") from None

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()

    def _status(self, state: str, last: FrameResult | None) -> dict:
        elapsed = max(time.time() - self._started, 1e-6)
        status = {
            "state": state,
            "fps": round(self._frames / elapsed, 2),
            "frames": self._frames,
            "dropped": 0,
            "uri": self.source_uri,
        }
        if last is not None:
            status["last_ts"] = int(last.wall_time * 1000)
        return status
