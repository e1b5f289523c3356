"""`subscribe` against malformed entries, bad keys and Redis error replies, on a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.core.contract import RedisKeys
from pipeline.engine.batch import FrameInfo
from pipeline.sinks.payload import FramePayload, frame_fields
from pipeline.sinks.subscriber import follow_events_pubsub
from tests.redis_readers import wait_for_blocked_reader

SCRIPT = Path(sys.executable).parent / "emotion-stream"
FACE = {"id": 3, "box": [10.0, 20.0, 50.0, 70.0], "emotion": "happy", "score": 0.91,
        "scores": {"happy": 0.91, "neutral": 0.05}}
ENDED = json.dumps({"state": "ended", "frames": 3})

GOOD_EVENTS = {
    "1-0": {"v": "1", "type": "face_enter", "ts": "1000", "pts": "0.100", "id": "3", "emotion": "happy",
            "box": "[10.0, 20.0, 50.0, 70.0]"},
    # A class named like a JSON literal stays text; a field this reader does not know is kept.
    "5-0": {"v": "1", "type": "emotion_change", "ts": "1005", "pts": "0.500", "id": "3", "from": "happy",
            "to": "null", "onset": "0.4", "score": "0.8", "lat": "12"},
    # A type this reader does not know passes unchecked; an unknown field with a number JSON cannot hold stays text.
    "9-0": {"v": "1", "type": "gaze", "ts": "1009", "pts": "0.900", "at": "[1, 2]", "x": "1e999", "y": "[1, -1e999]"},
    "20-0": {"v": "1", "type": "source_status", "ts": "1020", "pts": "2.000", "state": "ended", "reason": ""},
}
BAD_EVENTS = {
    "2-0": {"v": "1", "ts": "2", "pts": "0.1"},                                   # no type (the case)
    "3-0": {"v": "3", "type": "face_enter", "ts": "3", "pts": "0.1"},             # another schema version
    "4-0": {"type": "face_exit", "ts": "4", "pts": "0.1"},                        # no v
    "6-0": {"v": "1", "type": "gaze", "ts": "soon", "pts": "0.1"},                # ts not a number
    "7-0": {"v": "1", "type": "gaze", "ts": "1.5", "pts": "0.1"},                 # ts not an integer
    "8-0": {"v": "1", "type": "gaze", "ts": "8", "pts": "NaN"},                   # pts not finite
    "10-0": {"v": "1", "type": b"\xff\xfe\x00junk", "ts": "10", "pts": "0.1"},    # bytes, not UTF-8
    "11-0": {b"\xc3\x28": "1", "v": "1", "type": "gaze", "ts": "11", "pts": "0"},  # a field name, not UTF-8
    "12-0": {"v": "1", "type": "face_enter", "ts": "12", "pts": "0.1", "id": "3", "emotion": "happy",
             "box": "[1, 2]"},                                                     # box of the wrong shape
    "13-0": {"v": "1", "type": "face_enter", "ts": "13", "pts": "0.1", "id": "3", "emotion": "happy",
             "box": "{not json"},                                                  # box not JSON
    "14-0": {"v": "1", "type": "face_exit", "ts": "14", "pts": "0.1", "emotion": "happy", "duration_ms": "40"},
    "15-0": {"v": "1", "type": "source_status", "ts": "15", "pts": "0.1", "state": "exploded", "reason": ""},
    "16-0": {"v": "1", "type": "", "ts": "16", "pts": "0.1"},                     # empty type
    "17-0": {"v": "1", "type": "emotion_change", "ts": "17", "pts": "0.1", "id": "true", "from": "a", "to": "b",
             "onset": "0.1", "score": "0.5"},                                      # id a boolean
}


def _frame(index: int, faces: list) -> dict:
    """A frames-stream entry exactly as the writer encodes it."""
    frame = FrameInfo("cam", index, index / 10, 1_700_000_000 + index / 10, 640, 480)
    return frame_fields(FramePayload(frame, faces, json.dumps(faces)), "demo-1234abcd")


GOOD_FRAMES = {"1-0": _frame(0, [FACE]), "5-0": _frame(4, []), "9-0": _frame(8, [FACE | {"id": None}])}
BAD_FRAMES = {
    "2-0": _frame(1, [FACE]) | {"faces": "[{"},                                   # faces not JSON
    "3-0": _frame(2, [FACE]) | {"faces": json.dumps({"id": 3})},                   # faces not a list
    "4-0": _frame(3, ["happy"]),                                                   # a face not an object
    "6-0": _frame(5, [{k: v for k, v in FACE.items() if k != "box"}]),             # a face without box
    "7-0": _frame(6, [FACE | {"box": [1, 2, 3]}]),                                 # box of three
    "8-0": _frame(7, [FACE | {"score": "high"}]),                                  # score a string
    "10-0": _frame(9, [FACE | {"scores": [0.1, 0.9]}]),                            # scores a list
    "11-0": _frame(10, [FACE | {"id": "3"}]),                                      # track id a string
    "12-0": _frame(11, [FACE]) | {"frame": "eleven"},                              # frame not a number
    "13-0": _frame(12, [FACE]) | {"frame": "-1"},                                  # frame negative
    "14-0": _frame(13, [FACE]) | {"pts": "inf"},                                   # pts not finite
    "15-0": {k: v for k, v in _frame(14, [FACE]).items() if k != "model"},         # no model
    "16-0": _frame(15, [FACE]) | {"v": "3"},                                       # another schema version
    "17-0": _frame(16, [FACE]) | {"faces": b"\x80\x81[]"},                         # binary junk
    "18-0": _frame(17, [FACE]) | {"faces": "[" * 100_000 + "]" * 100_000},         # nested past the recursion limit
    "19-0": _frame(18, [FACE]) | {"faces": json.dumps([FACE])[:-2] + ', "x": 1e999}]'},  # an infinite extra number
}


def _strict_json(line: str) -> object:
    """`line` parsed as standard JSON: NaN and Infinity, which Python's json writes and reads, are refused."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def _fill(client: redis.Redis, stream: str, *entries: dict[str, dict]) -> None:
    for entry_id, fields in sorted((e for group in entries for e in group.items()), key=lambda e: int(e[0][:-2])):
        client.xadd(stream, fields, id=entry_id)


def _subscribe(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[str], list[str]]:
    code = main(["subscribe", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def _skipped_ids(err: list[str]) -> set[str]:
    return {line.split()[3] for line in err if line.startswith("emotion-stream: skipped entry ")}


@pytest.mark.parametrize("mode", [["--from-start"], ["--group", "G"]], ids=["replay", "group"])
def test_malformed_events_are_reported_and_skipped(redis_url: str, mode: list, capsys) -> None:
    client = redis.Redis.from_url(redis_url)
    _fill(client, "emotion:events:e1", GOOD_EVENTS, BAD_EVENTS)
    client.hset("emotion:sources", "e1", ENDED)
    code, out, err = _subscribe(capsys, "--events", "--source", "e1", "--redis", redis_url, "--until-ended",
                                "--json", *mode)
    assert code == 0, err
    events = [_strict_json(line) for line in out]
    assert [e["ts"] for e in events] == [1000, 1005, 1009, 1020]
    assert events[1]["to"] == "null" and events[1]["lat"] == 12 and events[0]["box"] == [10.0, 20.0, 50.0, 70.0]
    assert events[2]["x"] == "1e999" and events[2]["y"] == "[1, -1e999]"
    assert _skipped_ids(err) == set(BAD_EVENTS) and len(err) == len(BAD_EVENTS), err
    assert "entry 2-0 of emotion:events:e1: no 'type' field" in "\n".join(err)


def test_a_malformed_event_is_dead_lettered_and_never_blocks_the_group(redis_url: str, capsys) -> None:
    """The issue's case: `XADD emotion:events:e1 2-0 v 1 ts 2 pts 0.1`, then two restarts of a group reader."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    _fill(client, "emotion:events:e1", GOOD_EVENTS, {"2-0": BAD_EVENTS["2-0"]})
    client.hset("emotion:sources", "e1", ENDED)
    args = ["--events", "e1", "--group", "G", "--consumer", "w1", "--redis", redis_url, "--until-ended"]
    code, out, err = _subscribe(capsys, *args)
    assert code == 0 and len(out) == len(GOOD_EVENTS)
    assert err == ["emotion-stream: skipped entry 2-0 of emotion:events:e1: no 'type' field; "
                   "acknowledged and moved to emotion:dead:e1"]
    assert client.xpending("emotion:events:e1", "G")["pending"] == 0
    [(_, letter)] = client.xrange(RedisKeys().dead_letters("e1"))
    assert letter == {"stream": "emotion:events:e1", "id": "2-0", "group": "G", "consumer": "w1",
                      "reason": "no 'type' field", "entry:v": "1", "entry:ts": "2", "entry:pts": "0.1"}
    assert _subscribe(capsys, *args) == (0, [], [])


def test_a_restarted_consumer_gets_its_pending_entries_first(redis_url: str, capsys) -> None:
    """A consumer that crashed holding entries (delivered, never acknowledged) gets them back at restart;
    the malformed one among them is dead-lettered and one trimmed meanwhile is reported."""
    client = redis.Redis.from_url(redis_url)
    stream = "emotion:events:e1"
    _fill(client, stream, GOOD_EVENTS, BAD_EVENTS)
    client.xgroup_create(stream, "G", id="0")
    held = client.xreadgroup("G", "w1", {stream: ">"}, count=8)[0][1]
    client.xdel(stream, "3-0")  # trimmed while pending
    client.hset("emotion:sources", "e1", ENDED)
    code, out, err = _subscribe(capsys, "--events", "e1", "--group", "G", "--consumer", "w1", "--redis", redis_url,
                                "--until-ended", "--json")
    assert code == 0 and len(held) == 8
    assert [json.loads(line)["ts"] for line in out] == [1000, 1005, 1009, 1020]
    assert "skipped entry 3-0 of emotion:events:e1: it was trimmed from the stream before it was acknowledged" \
        in "\n".join(err)
    assert _skipped_ids(err) == set(BAD_EVENTS)
    assert client.xlen("emotion:dead:e1") == len(BAD_EVENTS) - 1
    assert client.xpending(stream, "G")["pending"] == 0


@pytest.mark.parametrize("mode", [["--from-start"], ["--group", "G"]], ids=["replay", "group"])
def test_malformed_frames_are_reported_and_skipped(redis_url: str, mode: list, capsys) -> None:
    client = redis.Redis.from_url(redis_url)
    _fill(client, "emotion:frames:cam", GOOD_FRAMES, BAD_FRAMES)
    client.hset("emotion:sources", "cam", ENDED)
    code, out, err = _subscribe(capsys, "cam", "--redis", redis_url, "--until-ended", *mode)
    assert code == 0, err
    assert [line.split()[2] for line in out] == ["0", "4", "8"]
    assert _skipped_ids(err) == set(BAD_FRAMES) and len(err) == len(BAD_FRAMES), err
    assert max(map(len, err)) < 300, "one short line each, however big the entry"


@pytest.mark.parametrize("mode", [["--from-start"], ["--group", "G"]], ids=["replay", "group"])
def test_all_sources_go_on_past_a_key_that_is_not_a_stream(redis_url: str, mode: list, capsys) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("emotion:events:broken", "a string")
    client.xadd("emotion:events:a:b", {"v": "1"})  # not a source id
    _fill(client, "emotion:events:e1", GOOD_EVENTS)
    client.hset("emotion:sources", "e1", ENDED)
    code, out, err = _subscribe(capsys, "--events", "--all", "--redis", redis_url, "--until-ended", *mode)
    assert code == 0, err
    assert len(out) == len(GOOD_EVENTS)
    assert "emotion-stream: skipped emotion:events:broken: it holds a string, not a stream" in err
    assert any("'emotion:events:a:b'" in line and "source id" in line for line in err), err


@pytest.mark.parametrize("mode", [[], ["--events", "--from-start"], ["--events", "--group", "G"]])
def test_a_key_of_the_wrong_type_is_one_line_and_exit_5(redis_url: str, mode: list, capsys) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("emotion:frames:x", "a string")
    client.set("emotion:events:x", "a string")
    code, out, err = _subscribe(capsys, "x", "--redis", redis_url, *mode)
    assert code == 5 and out == [] and len(err) == 1, err
    assert "emotion:" in err[0] and ":x" in err[0] and "WRONGTYPE" in err[0]


def test_a_refused_command_is_one_line_and_exit_5(redis_url: str, capsys) -> None:
    """An ACL user allowed to connect but not to read through a group: NOPERM, password never shown."""
    admin = redis.Redis.from_url(redis_url)
    _fill(admin, "emotion:events:e1", GOOD_EVENTS)
    admin.acl_setuser("reader", enabled=True, passwords=["+s3cret-pw"], keys=["*"], channels=["*"],
                      commands=["+@all", "-xreadgroup"])
    try:
        url = redis_url.replace("redis://", "redis://reader:s3cret-pw@")
        code, out, err = _subscribe(capsys, "--events", "e1", "--group", "G", "--redis", url)
    finally:
        admin.acl_deluser("reader")
    assert code == 5 and len(err) == 1 and "no permissions" in err[0] and "s3cret" not in err[0], err


def test_a_malformed_status_is_reported_and_reading_goes_on(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.xadd("emotion:frames:cam", GOOD_FRAMES["1-0"], id="1-0")
    client.hset("emotion:sources", "cam", "{not json")
    reader = subprocess.Popen([str(SCRIPT), "subscribe", "cam", "--from-start", "--until-ended", "--redis", redis_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_complaint = reader.stderr.readline()
        client.hset("emotion:sources", "cam", ENDED)
        out, _ = reader.communicate(timeout=30)
    finally:
        reader.kill()
    assert first_complaint.startswith("emotion-stream: skipped emotion:sources field cam: status is not valid JSON")
    assert reader.returncode == 0 and "frame      0" in out


def test_an_invalid_source_id_exits_2(redis_url: str) -> None:
    run = subprocess.run([str(SCRIPT), "subscribe", "no such/id", "--redis", redis_url],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and run.stderr.strip() == (
        "emotion-stream: error: invalid source id 'no such/id': use 1-64 of A-Z a-z 0-9 . _ - (not '.' or '..')")


def test_a_source_not_written_yet_is_announced_then_awaited(redis_url: str) -> None:
    reader = subprocess.Popen([str(SCRIPT), "subscribe", "later", "--until-ended", "--redis", redis_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_blocked_reader(redis_url)
        client = redis.Redis.from_url(redis_url)
        client.xadd("emotion:frames:later", GOOD_FRAMES["1-0"], id="1-0")
        client.hset("emotion:sources", "later", ENDED)
        out, err = reader.communicate(timeout=30)
    finally:
        reader.kill()
    assert reader.returncode == 0 and "frame      0" in out
    assert err == "emotion-stream: nothing written yet to emotion:frames:later; waiting for it (Ctrl-C to stop)\n"


@pytest.mark.parametrize("mode", [["--from-start"], ["--group", "G"]], ids=["replay", "group"])
def test_every_source_waits_for_the_first_stream(redis_url: str, mode: list) -> None:
    reader = subprocess.Popen([str(SCRIPT), "subscribe", "--events", "--all", "--until-ended", "--redis", redis_url,
                               *mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        announced = reader.stderr.readline()
        client = redis.Redis.from_url(redis_url)
        _fill(client, "emotion:events:e1", GOOD_EVENTS)
        client.hset("emotion:sources", "e1", ENDED)
        out, err = reader.communicate(timeout=30)
    finally:
        reader.kill()
    assert announced == "emotion-stream: nothing written yet to emotion:events:*; waiting for it (Ctrl-C to stop)\n"
    assert reader.returncode == 0 and len(out.splitlines()) == len(GOOD_EVENTS) and err == ""


def test_malformed_pubsub_messages_are_reported_and_skipped(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    good = {"v": "1", "type": "face_exit", "source": "e1", "ts": 5, "pts": 0.5, "id": 3, "emotion": "happy",
            "duration_ms": 400}
    bad = [b"\xff junk", "not json", "[1, 2]", json.dumps(good | {"v": 1}), json.dumps(good | {"source": "a b"}),
           json.dumps({k: v for k, v in good.items() if k != "type"}), json.dumps(good | {"duration_ms": "long"}),
           json.dumps(good)[:-1] + ', "x": 1e999}']
    skipped = []
    events = follow_events_pubsub(client, RedisKeys(), None, skipped.append)

    def publish() -> None:
        while client.pubsub_numsub("emotion:events")[0][1] == 0:
            time.sleep(0.05)
        for message in [*bad, json.dumps(good)]:
            client.publish("emotion:events", message)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        assert next(events) == good
    finally:
        events.close()
        publisher.join()
    assert len(skipped) == len(bad) and all(s.where == "a message on emotion:events" for s in skipped)




def test_until_ended_waits_through_an_interrupted_run(redis_url: str) -> None:
    """`interrupted` is not the end: a re-run continues the stream, so the reader waits for it."""
    client = redis.Redis.from_url(redis_url)
    client.xadd("emotion:frames:cam", GOOD_FRAMES["1-0"], id="1-0")
    client.hset("emotion:sources", "cam", json.dumps({"state": "interrupted", "frames": 1}))
    reader = subprocess.Popen([str(SCRIPT), "subscribe", "cam", "--from-start", "--until-ended", "--redis", redis_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = reader.stdout.readline()
        wait_for_blocked_reader(redis_url)
        try:  # a reader that took `interrupted` for the end would stop after its next read (1 s)
            reader.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        still_reading = reader.poll() is None
        client.xadd("emotion:frames:cam", GOOD_FRAMES["1-0"], id="2-0")
        client.hset("emotion:sources", "cam", ENDED)
        rest, _ = reader.communicate(timeout=30)
    finally:
        reader.kill()
    assert "frame      0" in first and still_reading
    assert reader.returncode == 0 and "frame      0" in rest


def test_live_events_until_ended_stop_for_an_ended_source(redis_url: str) -> None:
    """Without --from-start, events are followed live; --until-ended still ends once the source has."""
    client = redis.Redis.from_url(redis_url)
    client.xadd("emotion:events:e1", GOOD_EVENTS["1-0"], id="1-0")
    client.hset("emotion:sources", "e1", ENDED)
    run = subprocess.run([str(SCRIPT), "subscribe", "--events", "e1", "--until-ended", "--redis", redis_url],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == ""


@pytest.mark.parametrize("idle", ["nan", "inf", "-1"])
def test_claim_idle_must_be_a_finite_number_of_seconds(idle: str, redis_url: str,
                                                      capsys: pytest.CaptureFixture) -> None:
    code = main(["subscribe", "cam1", "--redis", redis_url, "--group", "g", "--claim-idle", idle])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert "--claim-idle must be a number of seconds, 0 or more" in err[0]


def test_an_empty_group_name_is_refused(redis_url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["subscribe", "cam1", "--redis", redis_url, "--group", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--group must name a consumer group" in err[0]
