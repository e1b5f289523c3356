"""The contract as files: JSON Schema 2020-12 of every record and an AsyncAPI 3.0 document of the Redis keys.

    frame.schema.json          a processed frame and its faces
    event.schema.json          a status change or a face event
    source-status.schema.json  a source's value in the `emotion:sources` hash
    run-record.schema.json     what a file run is (the `run` of its status)
    asyncapi.yaml              streams, pub/sub channel, status hash, consumer groups, both key layouts

They ship inside the package (`schema_path`). `python -m pipeline.core.schemas` prints the docs' contract page,
made from them (docs/contract.md; a test keeps the two the same).
"""

from __future__ import annotations

import json
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent
RECORDS = ("frame", "event", "source-status", "run-record")
"""The records, each with a `<name>.schema.json`."""


def schema_path(record: str) -> Path:
    """The JSON Schema file of `record` (one of RECORDS)."""
    if record not in RECORDS:
        raise ValueError(f"unknown record {record!r}: one of {', '.join(RECORDS)}")
    return SCHEMAS / f"{record}.schema.json"


def load_schema(record: str) -> dict:
    """The JSON Schema of `record` as a dict."""
    return json.loads(schema_path(record).read_text())


def string_fields(record: str) -> set[str]:
    """The record's properties typed as strings: the fields a Redis entry holds as text, not as JSON."""
    schema = load_schema(record)
    return {name for name, spec in schema.get("properties", {}).items() if _is_string(schema, spec)} | {
        name for branch in schema.get("allOf", []) for name, spec in branch["then"]["properties"].items()
        if _is_string(schema, spec)}


def _is_string(schema: dict, spec: dict) -> bool:
    return _resolved(schema, spec).get("type") == "string"


def _resolved(schema: dict, spec: dict) -> dict:
    """`spec`, or what its `$ref` points at (in `schema` or in another record's file)."""
    if "$ref" not in spec:
        return spec
    target, _, pointer = spec["$ref"].partition("#")
    document = load_schema(target.removesuffix(".schema.json")) if target else schema
    for part in filter(None, pointer.split("/")):
        document = document[part]
    return document | {key: value for key, value in spec.items() if key != "$ref"}


def contract_page() -> str:
    """The docs' contract page: the decoding rule, then every record's fields, from the schema files."""
    lines = ["# The Redis contract", "",
             "<!-- Made by `python -m pipeline.core.schemas` from pipeline/core/schemas/: edit those, not this. -->",
             "", _rule(), ""]
    for record in RECORDS:
        schema = load_schema(record)
        lines += [f"## {schema['title']} (`{record}.schema.json`)", "", schema["description"], "",
                  "| field | type | required | meaning |", "| --- | --- | --- | --- |"]
        required = set(schema.get("required", []))
        for name, spec in schema.get("properties", {}).items():
            lines.append(f"| `{name}` | {_type(schema, spec)} | {'yes' if name in required else ''} | "
                         f"{_meaning(schema, spec)} |")
        for branch in schema.get("allOf", []):
            kind = branch["if"]["properties"]["type"]["const"]
            fields = ", ".join(f"`{name}` ({_type(schema, spec)})" for name, spec in branch["then"]["properties"].items())
            lines.append(f"| type `{kind}` | | | also {fields} |")
        lines.append("")
    lines += ["## Channels and keys (`asyncapi.yaml`)", "",
              "The AsyncAPI 3.0 document names every stream, the pub/sub channel and the status hash, in both key "
              "layouts, with consumer groups; it ships beside the schemas.", ""]
    return "\n".join(lines)


def _rule() -> str:
    return ("**Decoding a stream entry.** An entry's field holds the record's value of the same name: the text as "
            "it is where the schema types the value as a string, the value's JSON text otherwise (numbers, lists, "
            "objects). A frame's or an event's `source` is not a field: it is the source id in the key. An event's "
            "`event_id` is not a field: it is the entry's id. Pub/sub messages and status values are whole JSON "
            "records. Every output (Redis, timeline.jsonl, events.jsonl, `subscribe --json`, pub/sub) carries the "
            "same record; fields may be added within a version, so readers keep the fields they do not know.")


def _type(schema: dict, spec: dict) -> str:
    resolved = _resolved(schema, spec)
    if resolved.get("title"):
        return f"{resolved['title'].lower()} (`{spec['$ref']}`)"
    kind = resolved.get("type", "")
    text = " or ".join(kind) if isinstance(kind, list) else kind
    if "enum" in resolved:
        text += ": " + ", ".join(f"`{value}`" for value in resolved["enum"])
    return text


def _meaning(schema: dict, spec: dict) -> str:
    resolved = _resolved(schema, spec)
    return resolved.get("description", "").replace("|", "\\|")
