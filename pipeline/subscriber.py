"""Follow a source's frames stream: what `emotion-stream subscribe` prints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from pipeline.contract import RedisKeys
from pipeline.errors import SinkError

ENDED_STATES = {"ended", "failed"}


@dataclass(frozen=True)
class FrameEntry:
    """One decoded `emotion:frames:{source}` entry."""

    entry_id: str
    frame: int
    pts: float
    ts: int
    faces: list[dict]
    model: str

    def to_json(self) -> dict:
        """The entry as JSON, faces parsed."""
        return {
            "id": self.entry_id,
            "frame": self.frame,
            "pts": self.pts,
            "ts": self.ts,
            "faces": self.faces,
            "model": self.model,
        }

    def format(self) -> str:
        """One human-readable line."""
        faces = ", ".join(f"{face['emotion']} {face['score']:.2f}" for face in self.faces) or "-"
        return f"{self.pts:9.3f}s  frame {self.frame:>6}  {len(self.faces)} face(s): {faces}"


def parse_entry(entry_id: bytes | str, fields: dict) -> FrameEntry:
    """Decode a raw XREAD/XRANGE entry of the frames stream."""
    text = {_text(k): _text(v) for k, v in fields.items()}
    return FrameEntry(
        entry_id=_text(entry_id),
        frame=int(text["frame"]),
        pts=float(text["pts"]),
        ts=int(text["ts"]),
        faces=json.loads(text["faces"]),
        model=text.get("model", ""),
    )


def follow_frames(
    client: redis.Redis,
    keys: RedisKeys,
    source_id: str,
    from_start: bool = False,
    stop_when_ended: bool = False,
    block_ms: int = 1000,
) -> Iterator[FrameEntry]:
    """Yield entries as they arrive (from the first entry with `from_start`, else only new ones).

    With `stop_when_ended`, iteration ends once the source's status says ended or failed and
    no entries remain unread.
    """
    stream = keys.frames(source_id)
    last_id = "0-0" if from_start else _top_id(client, stream)
    while True:
        try:
            replies = client.xread({stream: last_id}, count=500, block=block_ms)
        except redis.RedisError as exc:
            raise SinkError(f"lost Redis while reading {stream}: {exc}") from None
        for _stream, entries in replies:
            for entry_id, fields in entries:
                last_id = _text(entry_id)
                yield parse_entry(entry_id, fields)
        if not replies and stop_when_ended and _source_state(client, keys, source_id) in ENDED_STATES:
            return


def _top_id(client: redis.Redis, stream: str) -> str:
    newest = client.xrevrange(stream, count=1)
    return _text(newest[0][0]) if newest else "0-0"


def _source_state(client: redis.Redis, keys: RedisKeys, source_id: str) -> str | None:
    raw = client.hget(keys.sources, source_id)
    return json.loads(raw).get("state") if raw else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
