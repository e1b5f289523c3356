"""The contract as files: every record `process` writes, in every output, validates against the shipped JSON
Schemas, and a frame or an event is the same record (same keys, same values) in each of them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.core.contract import RedisKeys
from pipeline.core.schemas import RECORDS, contract_page
from tests.contract import assert_same_records, assert_valid, file_records, redis_records, validator

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_schemas_are_valid_json_schema_2020_12() -> None:
    for record in RECORDS:
        validator(record)  # checks the schema against the 2020-12 meta-schema


def test_the_docs_contract_page_is_made_from_the_schema_files() -> None:
    assert (DOCS / "contract.md").read_text() == contract_page(), "run: python -m pipeline.core.schemas > docs/contract.md"


def test_a_record_of_the_wrong_shape_is_refused() -> None:
    frame = {"v": "1", "source": "cam1", "frame": 0, "pts": 0.0, "ts": 1, "lat": 2, "faces": [], "model": "m"}
    assert_valid("frame", frame)
    for broken in ({**frame, "frame": -1}, {**frame, "v": "3"}, {k: v for k, v in frame.items() if k != "lat"},
                   {**frame, "faces": [{"id": 1, "box": [0, 0, 1], "emotion": "happy", "score": 0.5, "scores": {}}]}):
        with pytest.raises(AssertionError):
            assert_valid("frame", broken)
    with pytest.raises(AssertionError, match="'state' is a required property"):
        assert_valid("event", {"v": "1", "event_id": "1-0", "type": "source_status", "source": "cam1", "ts": 1,
                               "pts": 0.0, "reason": ""})


class _Listener:
    """Every message of the events channel while a run goes on."""

    def __init__(self, url: str, channel: str) -> None:
        self.pubsub = redis.Redis.from_url(url).pubsub()
        self.pubsub.subscribe(channel)
        while self.pubsub.get_message(timeout=1.0) is None:  # the subscription is confirmed
            pass
        self.messages: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                self.messages.append(json.loads(message["data"]))

    def stop(self) -> list[dict]:
        time.sleep(0.5)  # the last messages are on their way
        self._stop.set()
        self._thread.join()
        self.pubsub.close()
        return self.messages


@pytest.mark.parametrize("contract", [1, 2])
def test_process_writes_the_same_valid_records_to_redis_files_pubsub_and_subscribe(
    scripted_video: tuple, weights: Path, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture,
    contract: int,
) -> None:
    video, truth = scripted_video
    keys = RedisKeys("emotion", contract)
    listener = _Listener(redis_url, keys.channel)
    assert main(["process", str(video), "--weights", str(weights), "--redis", redis_url, "--out", str(tmp_path),
                 "--source-id", "talk", "--quiet", "--contract", str(contract)]) == 0
    published = listener.stop()
    capsys.readouterr()
    frames, events, status = redis_records(redis.Redis.from_url(redis_url), keys, "talk")
    assert len(frames) == len(truth) and {frame["v"] for frame in frames} == {str(contract)}
    assert status["v"] == str(contract) and status["source"] == "talk" and status["run"]["v"] == str(contract)
    file_frames, file_events = file_records(tmp_path / "talk")
    assert_same_records(file_frames, frames)
    assert [event for event in events if event["type"] != "source_status"], "the comparison needs face events"
    assert [event["state"] for event in events if event["type"] == "source_status"] == ["live", "ended"]
    assert_same_records(file_events, events, apart_from=())  # statuses too: events.jsonl is the events stream
    for message in published:
        assert_valid("event", message)
    assert_same_records(published, events, apart_from=())  # event_id included: receivers can drop repeats

    def subscribed(*flags: str) -> list[dict]:
        assert main(["subscribe", "talk", "--redis", redis_url, "--contract", str(contract), "--from-start",
                     "--until-ended", "--json", *flags]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert_same_records(subscribed(), frames, apart_from=())
    assert_same_records(subscribed("--events"), events, apart_from=())
