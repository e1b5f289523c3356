"""Records as a third party reads them: decoded from Redis by the contract's rule alone, validated against the
shipped JSON Schemas with a real validator (jsonschema, Draft 2020-12, the schemas' cross-references resolved)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import redis
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pipeline.core.contract import RedisKeys
from pipeline.core.schemas import RECORDS, load_schema, string_fields


@cache
def validator(record: str) -> Draft202012Validator:
    """A validator of `record` whose `$ref`s to the other records' files resolve to the shipped schemas."""
    resources = [(f"{name}.schema.json", Resource.from_contents(load_schema(name))) for name in RECORDS]
    resources += [(load_schema(name)["$id"], Resource.from_contents(load_schema(name))) for name in RECORDS]
    schema = load_schema(record)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=Registry().with_resources(resources))


def assert_valid(record: str, value: dict) -> None:
    """`value` is a valid `record` (AssertionError naming the first problem)."""
    error = next(iter(validator(record).iter_errors(value)), None)
    assert error is None, f"{record} {json.dumps(value)[:300]}: {error.message} at {list(error.absolute_path)}"


def decoded(record: str, entry_id: bytes, fields: dict, stream: str) -> dict:
    """A stream entry decoded by the rule: string-typed fields as text, the others as JSON; `source` from the key,
    an event's `event_id` from the entry id."""
    text = {name.decode(): value.decode() for name, value in fields.items()}
    strings = string_fields(record)
    value = {name: field if name in strings else json.loads(field) for name, field in text.items()}
    value["source"] = RedisKeys.source_of(stream)
    if record == "event":
        value["event_id"] = entry_id.decode()
    return value


def redis_records(client: redis.Redis, keys: RedisKeys, source: str) -> tuple[list[dict], list[dict], dict]:
    """The source's frames and events as decoded records, and its status, each validated."""
    frames = [decoded("frame", entry_id, fields, keys.frames(source))
              for entry_id, fields in client.xrange(keys.frames(source))]
    events = [decoded("event", entry_id, fields, keys.events(source))
              for entry_id, fields in client.xrange(keys.events(source))]
    status = json.loads(client.hget(keys.sources, source))
    for frame in frames:
        assert_valid("frame", frame)
    for event in events:
        assert_valid("event", event)
    assert_valid("source-status", status)
    return frames, events, status


def file_records(folder: Path) -> tuple[list[dict], list[dict]]:
    """timeline.jsonl's frames and events.jsonl's events of one source's output folder, each validated."""
    frames = [json.loads(line) for line in (folder / "timeline.jsonl").read_text().splitlines()]
    events_file = folder / "events.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines()] if events_file.exists() else []
    for frame in frames:
        assert_valid("frame", frame)
    for event in events:
        assert_valid("event", event)
    return frames, events


def assert_same_records(ours: list[dict], theirs: list[dict], apart_from: tuple[str, ...] = ("lat",)) -> None:
    """The same records with the same keys, values equal but for `apart_from` (each output's own write time)."""
    assert [sorted(record) for record in ours] == [sorted(record) for record in theirs]
    strip = [{key: value for key, value in record.items() if key not in apart_from} for record in ours]
    assert strip == [{key: value for key, value in record.items() if key not in apart_from} for record in theirs]
