"""The write budget measurement against a real redis-server: realistic entries, counted, cleaned up."""

import json

import redis

from pipeline.core.contract import RedisKeys
from pipeline.engine.batch import FrameInfo
from pipeline.sinks.entries import parse_frame
from pipeline.sinks.payload import frame_fields
from pipeline.sinks.write_budget import EMOTIONS, main, measure, two_faces


def test_the_entries_are_what_the_sink_writes_for_two_faces() -> None:
    payload = two_faces(FrameInfo("cam", 3, 0.1, 1_700_000_000.0, 1280, 720))
    entry = parse_frame("100-0", frame_fields(payload, "model-1234abcd"), "emotion:frames:cam1")
    assert len(entry.faces) == 2 and all(list(face["scores"]) == list(EMOTIONS) for face in entry.faces)
    assert json.loads(payload.faces_json) == entry.faces


def test_measure_counts_every_entry_and_leaves_nothing_behind(redis_url: str) -> None:
    budget = measure(redis_url, frames=400, sources=4)
    assert budget.entries == 400 and budget.per_second > 0
    assert budget.redis_cpu_s is not None and budget.redis_cpu_s >= 0
    client = redis.Redis.from_url(redis_url)
    assert not client.keys("emotion-budget*")
    assert not client.exists(RedisKeys("emotion-budget").sources)


def test_the_command_prints_the_rate_and_the_machine(redis_url: str, capsys) -> None:
    assert main(["--redis", redis_url, "--frames", "160", "--sources", "2"]) == 0
    out = capsys.readouterr().out
    assert "frame entries/s through one writer (160 entries of about" in out and "cores)" in out
