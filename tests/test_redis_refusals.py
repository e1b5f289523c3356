"""Redis error replies against real redis-servers: a full server, keys of another type, bad URLs, passwords.

Nothing is lost silently: refused writes wait and stay in the spill file for the next run,
rejected ones are kept, counted and logged once per kind, and the run says so (exit 5).
"""

import json
import logging
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.core.config import PipelineConfig
from pipeline.core.errors import SinkError
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from pipeline.files.process import process_video
from pipeline.sinks.redis_server import LocalRedisServer
from pipeline.sinks.redis_writer import RedisWriter


@pytest.fixture(scope="module")
def detector(weights: Path, imgsz: int) -> EmotionDetector:
    return EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz))


def _config(redis_url: str, out: Path) -> PipelineConfig:
    config = PipelineConfig()
    config.redis.url, config.output.dir, config.redis.timeout_s = redis_url, str(out), 0.5
    return config


def _fill(url: str) -> None:
    """Write until Redis refuses: it is full (noeviction)."""
    client = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for number in range(1_000_000):
            client.set(f"filler:{number}", "x" * 200)


def test_a_full_redis_loses_nothing_the_run_says_so_and_a_rerun_writes_it_all(
    scripted_video: tuple, detector: EmotionDetector, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    video, truth = scripted_video
    with LocalRedisServer(extra_args=("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")) as server:
        _fill(server.url)
        with caplog.at_level(logging.ERROR, logger="pipeline.sinks.redis_writer"):
            full = process_video(_config(server.url, tmp_path), video, "full", detector, show_progress=False)
        client = redis.Redis.from_url(server.url)
        assert client.xlen("emotion:frames:full") == 0
        assert full.redis_problem is not None and "OOM" in full.redis_problem and "not written" in full.redis_problem
        assert len(caplog.records) <= 2, "the refusal is logged once (and what is left once), not per command"
        spills = list((tmp_path / "full").glob("redis-spill-*.jsonl"))
        assert len(spills) == 1 and len(spills[0].read_text().splitlines()) > len(truth)
        summary = json.loads((tmp_path / "full" / "summary.json").read_text())
        assert summary["redis_problem"] == full.redis_problem

        client.config_set("maxmemory", "0")
        again = process_video(_config(server.url, tmp_path), video, "full", detector, show_progress=False)
        assert again.redis_problem is None
        frames = [int(fields[b"frame"]) for _id, fields in client.xrange("emotion:frames:full")]
        assert frames == list(range(len(truth)))
        assert json.loads(client.hget("emotion:sources", "full"))["state"] == "ended"
        assert not list((tmp_path / "full").glob("redis-spill-*.jsonl"))


def test_a_key_of_another_type_refuses_the_run_before_anything_is_written(
    redis_url: str, scripted_video: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("emotion:frames:wt", "foo")
    with pytest.raises(SinkError, match="emotion:frames:wt holds a string, not a stream"):
        process_video(_config(redis_url, tmp_path), scripted_video[0], "wt", detector, show_progress=False)
    assert client.get("emotion:frames:wt") == b"foo" and not client.exists("emotion:events:wt")


def test_commands_redis_rejects_are_kept_counted_and_logged_once_per_kind(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("taken", "foo")
    spill = tmp_path / "redis-spill.jsonl"
    with caplog.at_level(logging.ERROR, logger="pipeline.sinks.redis_writer"):
        writer = RedisWriter(redis_url, spill_path=spill, batch=7)
        writer.submit([["xadd", key, f"{n + 1}-0", {"n": str(n)}, 100, None]
                       for n in range(40) for key in ("taken", "good")])
        assert writer.close() == 0
    assert writer.rejected == {"taken": 40} and writer.written == {"good": 40}
    assert "WRONGTYPE" in writer.rejections["taken"]
    kept = [json.loads(line) for line in (tmp_path / "redis-spill-rejected.jsonl").read_text().splitlines()]
    assert [line["command"][3]["n"] for line in kept] == [str(n) for n in range(40)]
    assert all(line["error"].startswith("WRONGTYPE") for line in kept)
    assert len(caplog.records) == 1
    assert client.xlen("good") == 40


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    return code, err


def test_a_wrong_password_refuses_process_and_serve_at_the_start(
    scripted_video: tuple, weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with LocalRedisServer(password="right-one") as server:
        url = server.url.replace("right-one", "wrong-one")
        code, err = _cli_error(["process", str(scripted_video[0]), "--weights", str(weights), "--imgsz", str(imgsz),
                                "--out", str(tmp_path), "--redis", url, "--quiet"], capsys)
        assert not (tmp_path / "scripted").exists(), "refused at the start: nothing processed"
        assert code == 5 and len(err) == 1 and "refused the connection" in err[0]
        assert "wrong-one" not in err[0] and "***@127.0.0.1" in err[0]
        config = tmp_path / "serve.yaml"
        config.write_text(f"redis: {{url: '{url}'}}\nsources:\n  - {{id: cam, uri: '{scripted_video[0]}'}}\n")
        code, err = _cli_error(["serve", "--config", str(config), "--weights", str(weights)], capsys)
        assert code == 5 and len(err) == 1 and "refused the connection" in err[0] and "wrong-one" not in err[0]


def test_a_database_that_is_not_a_number_is_refused(
    scripted_video: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/abc"
    code, err = _cli_error(["process", str(scripted_video[0]), "--weights", str(weights), "--imgsz", str(imgsz),
                            "--out", str(tmp_path), "--redis", url, "--quiet"], capsys)
    assert code == 2 and len(err) == 1 and "database 'abc' is not a number" in err[0]


@pytest.mark.parametrize("url", ["redis://:pw@[::1/0", "redis://127.0.0.1:99999/0"])
def test_a_malformed_redis_url_is_one_line_with_the_password_masked(
    scripted_video: tuple, weights: Path, imgsz: int, url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for argv in (["process", str(scripted_video[0]), "--weights", str(weights), "--imgsz", str(imgsz),
                  "--out", str(tmp_path), "--redis", url, "--quiet"], ["subscribe", "cam", "--redis", url]):
        code, err = _cli_error(argv, capsys)
        assert code == 2 and len(err) == 1 and "invalid Redis URL" in err[0] and ":pw@" not in err[0]
