"""Contract entries as a reader decodes them: frames, events, pub/sub messages, source statuses.

Every decoder checks what it reads and raises `MalformedEntry` naming the first problem
(a missing field, a number that is not one, JSON of the wrong shape, a schema version
other than 1 and 2, bytes that are not UTF-8...). Versions 1 and 2 hold the same fields
(they differ in key names only). Fields a decoder does not know are kept: writers may
add fields within a version. Decoded values never hold a non-finite number (NaN,
Infinity, or a literal such as 1e999 that overflows), so they always print as valid JSON:
in a field the contract defines, or a whole message, such a number makes the entry
malformed; a field the reader does not know keeps such a value as its text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum

from pipeline.core.contract import READABLE_VERSIONS, RedisKeys
from pipeline.core.source_ids import is_valid_source_id
from pipeline.core.states import SourceState

QUOTED_MAX = 40


class MalformedEntry(ValueError):
    """An entry that does not follow the contract; the message says why."""


class FieldKind(Enum):
    """What a contract field holds."""

    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    BOX = "box"
    STATE = "state"


EVENT_FIELDS: dict[str, dict[str, FieldKind]] = {
    "source_status": {"state": FieldKind.STATE, "reason": FieldKind.TEXT},
    "face_enter": {"id": FieldKind.INTEGER, "emotion": FieldKind.TEXT, "box": FieldKind.BOX},
    "face_exit": {"id": FieldKind.INTEGER, "emotion": FieldKind.TEXT, "duration_ms": FieldKind.INTEGER},
    "emotion_change": {"id": FieldKind.INTEGER, "from": FieldKind.TEXT, "to": FieldKind.TEXT,
                       "onset": FieldKind.NUMBER, "score": FieldKind.NUMBER},
    "micro_expression": {"id": FieldKind.INTEGER, "emotion": FieldKind.TEXT, "baseline": FieldKind.TEXT,
                         "onset": FieldKind.NUMBER, "apex": FieldKind.NUMBER, "offset": FieldKind.NUMBER,
                         "duration_ms": FieldKind.INTEGER, "peak": FieldKind.NUMBER},
}
"""The fields each event type carries besides `v`, `type`, `ts` and `pts`; other types pass unchecked."""


@dataclass(frozen=True)
class FrameEntry:
    """One decoded `emotion:frames:{source}` entry."""

    entry_id: str
    version: str
    source: str
    frame: int
    pts: float
    ts: int
    lat: int | None
    """None in entries of writers before `lat` was part of every frame record."""
    faces: list[dict]
    model: str

    def to_json(self) -> dict:
        """The frame record (pipeline/core/schemas/frame.schema.json), the same object as a timeline.jsonl line."""
        record = {"v": self.version, "source": self.source, "frame": self.frame, "pts": self.pts, "ts": self.ts}
        if self.lat is not None:
            record["lat"] = self.lat
        return record | {"faces": self.faces, "model": self.model}

    def format(self) -> str:
        """One human-readable line."""
        faces = ", ".join(f"{face['emotion']} {face['score']:.2f}" for face in self.faces) or "-"
        return f"{self.pts:9.3f}s  frame {self.frame:>6}  {len(self.faces)} face(s): {faces}"


def parse_frame(entry_id: bytes | str, fields: dict, stream: str) -> FrameEntry:
    """Decode a raw XREAD/XRANGE entry of the frames stream `stream` (the source is the id in its key)."""
    text = _text_fields(fields)
    version = _check_version(text)
    frame = _checked("frame", FieldKind.INTEGER, _json("frame", _required(text, "frame")))
    if frame < 0:
        raise MalformedEntry(f"frame is negative: {frame}")
    return FrameEntry(
        entry_id=text_of(entry_id),
        version=version,
        source=RedisKeys.source_of(stream),
        frame=frame,
        pts=_checked("pts", FieldKind.NUMBER, _json("pts", _required(text, "pts"))),
        ts=_checked("ts", FieldKind.INTEGER, _json("ts", _required(text, "ts"))),
        lat=_checked("lat", FieldKind.INTEGER, _json("lat", text["lat"])) if "lat" in text else None,
        faces=_faces(_json("faces", _required(text, "faces"))),
        model=_required(text, "model"),
    )


def parse_event(entry_id: bytes | str, fields: dict, stream: str) -> dict:
    """An events-stream entry as the event record: numbers and lists decoded, the source named after `stream`,
    `event_id` the entry's id."""
    text = _text_fields(fields)
    version = _check_version(text)
    kind = _required(text, "type")
    if not kind:
        raise MalformedEntry("type is empty")
    event: dict = {"v": version, "event_id": text_of(entry_id), "type": kind,
                   "ts": _checked("ts", FieldKind.INTEGER, _json("ts", _required(text, "ts"))),
                   "pts": _checked("pts", FieldKind.NUMBER, _json("pts", _required(text, "pts")))}
    known = EVENT_FIELDS.get(kind, {})
    for name, field_kind in known.items():
        value = _required(text, name)
        event[name] = _checked(name, field_kind, value if field_kind in _TEXT_KINDS else _json(name, value))
    for name, value in text.items():
        event.setdefault(name, _json_or_text(value))
    event.setdefault("source", RedisKeys.source_of(stream))
    return event


def parse_message(data: bytes | str) -> dict:
    """A pub/sub message of the events channel: one JSON object naming its source."""
    message = _json("message", text_of(data))
    if not isinstance(message, dict):
        raise MalformedEntry(f"not a JSON object: {_quoted(text_of(data))}")
    _check_version(message)
    source = _checked("source", FieldKind.TEXT, _required(message, "source"))
    if not is_valid_source_id(source):
        raise MalformedEntry(f"source {_quoted(source)} is not a source id")
    if not _checked("type", FieldKind.TEXT, _required(message, "type")):
        raise MalformedEntry("type is empty")
    _checked("ts", FieldKind.INTEGER, _required(message, "ts"))
    _checked("pts", FieldKind.NUMBER, _required(message, "pts"))
    for name, field_kind in EVENT_FIELDS.get(message["type"], {}).items():
        _checked(name, field_kind, _required(message, name))
    return message


def parse_status(raw: bytes | str) -> SourceState:
    """The state in an `emotion:sources` value (a JSON object with `state`)."""
    status = _json("status", text_of(raw))
    if not isinstance(status, dict):
        raise MalformedEntry(f"not a JSON object: {_quoted(text_of(raw))}")
    return SourceState(_checked("state", FieldKind.STATE, _required(status, "state")))


def text_of(value: bytes | str) -> str:
    """`value` as text; bytes that are not UTF-8 make the entry malformed."""
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise MalformedEntry(f"not UTF-8 text: {_quoted(value)}") from None


_TEXT_KINDS = {FieldKind.TEXT, FieldKind.STATE}


def _text_fields(fields: dict) -> dict[str, str]:
    return {text_of(name): text_of(value) for name, value in fields.items()}


def _check_version(values: dict) -> str:
    """The entry's `v`, when this reader reads that version."""
    version = _required(values, "v")
    if version not in READABLE_VERSIONS:
        raise MalformedEntry(f"v is {_quoted(version)}, this reader reads versions {' and '.join(READABLE_VERSIONS)}")
    return version


def _required(values: dict, name: str):
    if name not in values:
        raise MalformedEntry(f"no {name!r} field")
    return values[name]


class _NotFinite(ValueError):
    """A JSON number that is NaN or infinite once read."""


def _finite_json(text: str):
    """`text` parsed as JSON whose numbers are all finite; _NotFinite or ValueError otherwise."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def _json(name: str, text: str):
    try:
        return _finite_json(text)
    except _NotFinite as exc:
        raise MalformedEntry(f"{name} holds a number out of range ({exc}): {_quoted(text)}") from None
    except (ValueError, RecursionError):
        raise MalformedEntry(f"{name} is not valid JSON: {_quoted(text)}") from None


def _json_or_text(text: str):
    try:
        return _finite_json(text)
    except (ValueError, RecursionError):
        return text


def _reject_constant(name: str) -> None:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text[:QUOTED_MAX])
    return value


def _checked(name: str, kind: FieldKind, value):
    """`value`, when it is what `kind` says."""
    if kind is FieldKind.TEXT and isinstance(value, str):
        return value
    if kind is FieldKind.INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is FieldKind.NUMBER and _is_number(value):
        return value
    if kind is FieldKind.BOX and isinstance(value, list) and len(value) == 4 and all(map(_is_number, value)):
        return value
    if kind is FieldKind.STATE and isinstance(value, str) and value in {state.value for state in SourceState}:
        return value
    raise MalformedEntry(f"{name} is not {_KIND_NAMES[kind]}: {_quoted(value)}")


_KIND_NAMES = {
    FieldKind.TEXT: "text",
    FieldKind.INTEGER: "an integer",
    FieldKind.NUMBER: "a number",
    FieldKind.BOX: "a box [x1, y1, x2, y2]",
    FieldKind.STATE: "a source state (" + ", ".join(state.value for state in SourceState) + ")",
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _faces(faces: object) -> list[dict]:
    if not isinstance(faces, list):
        raise MalformedEntry(f"faces is not a JSON list: {_quoted(faces)}")
    for number, face in enumerate(faces):
        where = f"faces[{number}]"
        if not isinstance(face, dict):
            raise MalformedEntry(f"{where} is not a JSON object: {_quoted(face)}")
        track = _required(face, "id")
        if track is not None:
            _checked(f"{where}.id", FieldKind.INTEGER, track)
        _checked(f"{where}.box", FieldKind.BOX, _required(face, "box"))
        _checked(f"{where}.emotion", FieldKind.TEXT, _required(face, "emotion"))
        _checked(f"{where}.score", FieldKind.NUMBER, _required(face, "score"))
        scores = _required(face, "scores")
        if not isinstance(scores, dict) or not all(map(_is_number, scores.values())):
            raise MalformedEntry(f"{where}.scores is not an object of numbers: {_quoted(scores)}")
    return faces


def _quoted(value: object) -> str:
    """`value` quoted for a one-line message, shortened."""
    shown = repr(value)
    return shown if len(shown) <= QUOTED_MAX else shown[:QUOTED_MAX] + "..."
