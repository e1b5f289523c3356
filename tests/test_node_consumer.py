"""The Node.js consumer (examples/node-consumer) reads what `process` writes to a real redis-server through a
consumer group: every entry once, acknowledged, decoded by the schema rule into the records the Python reader
decodes, each valid against the shipped JSON Schemas; entries a dead consumer left pending are claimed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from pipeline.core.contract import RedisKeys
from pipeline.sinks.entries import parse_event, parse_frame
from tests.contract import assert_valid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "node-consumer"
SCRIPT = Path(sys.executable).parent / "emotion-stream"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: the Node.js example needs Node.js 20 or later"),
    pytest.mark.skipif(not (EXAMPLE / "node_modules").is_dir(),
                       reason="examples/node-consumer/node_modules is missing: npm ci --prefix examples/node-consumer"),
]


def _process(video: Path, weights: Path, imgsz: int, redis_url: str, out: Path, contract: int) -> None:
    """The real CLI writes the scripted video's frames and events under the source id `talk`."""
    run = subprocess.run([str(SCRIPT), "process", str(video), "--weights", str(weights), "--imgsz", str(imgsz),
                          "--redis", redis_url, "--source-id", "talk", "--out", str(out), "--quiet",
                          "--contract", str(contract)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr


def _consume(redis_url: str, *args: str) -> tuple[list[dict], list[dict], str]:
    """Run the Node consumer until it stops by itself (the source is ended and all is read): its frames, its
    events (the records with an `event_id`) and its stderr."""
    run = subprocess.run([NODE, str(EXAMPLE / "consumer.js"), "--redis", redis_url, "--source", "talk",
                          "--block", "100", "--idle-exit", "60", *args],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "no entry for" not in run.stderr, run.stderr  # it stopped because the source ended, not by --idle-exit
    records = [json.loads(line) for line in run.stdout.splitlines()]
    return ([r for r in records if "event_id" not in r], [r for r in records if "event_id" in r], run.stderr)


def _python_reads(client: redis.Redis, keys: RedisKeys) -> tuple[list[dict], list[dict]]:
    """The same entries as pipeline.sinks.entries decodes them."""
    stream = keys.frames("talk")
    frames = [parse_frame(entry_id, fields, stream).to_json() for entry_id, fields in client.xrange(stream)]
    stream = keys.events("talk")
    events = [parse_event(entry_id, fields, stream) for entry_id, fields in client.xrange(stream)]
    return frames, events


def _assert_all_read_and_acknowledged(client: redis.Redis, keys: RedisKeys, group: str,
                                      frames: list[dict], events: list[dict]) -> None:
    for stream, records in ((keys.frames("talk"), frames), (keys.events("talk"), events)):
        assert client.xpending(stream, group)["pending"] == 0
        assert len(records) == client.xlen(stream) > 0


def _assert_same_as_python(ours: list[dict], theirs: list[dict], raw: list[tuple]) -> None:
    """Each Node record holds the Python reader's record (its fields, `source`), and exactly the entry's fields
    and `source` (and an event's `event_id`)."""
    assert len(ours) == len(theirs)
    for record, python, (entry_id, fields) in zip(ours, theirs, raw, strict=True):
        assert {name: record.get(name) for name in python} == python, entry_id
        names = {name.decode() for name in fields} | {"source"} | ({"event_id"} if "event_id" in python else set())
        assert set(record) == names, entry_id


@pytest.mark.parametrize("contract", [1, 2])
def test_the_node_consumer_reads_acknowledges_and_decodes_every_entry(
    scripted_video: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path, contract: int,
) -> None:
    video, truth = scripted_video
    _process(video, weights, imgsz, redis_url, tmp_path, contract)
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys("emotion", contract)
    frames, events, _ = _consume(redis_url, "--group", "dashboards", "--consumer", "n1", "--contract", str(contract))

    _assert_all_read_and_acknowledged(client, keys, "dashboards", frames, events)
    assert len(frames) == len(truth)
    python_frames, python_events = _python_reads(client, keys)
    _assert_same_as_python(frames, python_frames, client.xrange(keys.frames("talk")))  # in stream order
    _assert_same_as_python(events, python_events, client.xrange(keys.events("talk")))
    assert {frame["source"] for frame in frames} == {event["source"] for event in events} == {"talk"}
    assert {frame["v"] for frame in frames} == {str(contract)}
    assert {"face_enter", "emotion_change", "source_status"} <= {event["type"] for event in events}
    for frame in frames:
        assert_valid("frame", frame)
    for event in events:
        assert_valid("event", event)


def test_the_node_consumer_claims_what_a_dead_consumer_left_pending(
    scripted_video: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path,
) -> None:
    video, _ = scripted_video
    _process(video, weights, imgsz, redis_url, tmp_path, 1)
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys()
    streams = {keys.frames("talk"): ">", keys.events("talk"): ">"}
    for stream in streams:
        client.xgroup_create(stream, "workers", id="0")
    # A Python consumer of the same group takes 5 entries of each stream and dies before acknowledging them.
    taken = {stream.decode(): [entry_id.decode() for entry_id, _ in entries]
             for stream, entries in client.xreadgroup("workers", "dead", streams, count=5)}
    assert [len(ids) for ids in taken.values()] == [5, 5]
    assert client.xpending(keys.frames("talk"), "workers")["consumers"] == [{"name": b"dead", "pending": 5}]

    frames, events, stderr = _consume(redis_url, "--group", "workers", "--consumer", "n2", "--claim-idle", "200")

    _assert_all_read_and_acknowledged(client, keys, "workers", frames, events)
    for stream in streams:
        assert f"claimed 5 entries of {stream} idle over 200 ms" in stderr
    python_frames, python_events = _python_reads(client, keys)
    by_frame = sorted(frames, key=lambda frame: frame["frame"])  # the claimed ones come after the new ones
    _assert_same_as_python(by_frame, python_frames, client.xrange(keys.frames("talk")))
    claimed = set(taken[keys.events("talk")])
    assert claimed <= {event["event_id"] for event in events}
    assert sorted(events, key=lambda event: tuple(map(int, event["event_id"].split("-")))) == python_events
    for record in frames:
        assert_valid("frame", record)
    for record in events:
        assert_valid("event", record)
