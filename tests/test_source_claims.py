"""One writer per source id, against a real redis-server: concurrent runs, serve after process,
unreadable files and `--replace` on a job of many files never mix or lose another run's data."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.core.config import PipelineConfig
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import SinkError
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from pipeline.files.process import process_files, process_video
from pipeline.sinks.redis_server import LocalRedisServer
from pipeline.sinks.source_claims import SourceClaims, SourceTaken
from training.synthetic_video import default_script, render_scripted_video

KEYS = RedisKeys()


@pytest.fixture(scope="module")
def detector(weights: Path, imgsz: int) -> EmotionDetector:
    return EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """a.mp4 (2 s) and b.mp4 (3 s), 10 fps: two different short files."""
    folder = tmp_path_factory.mktemp("clips")
    for name, seconds in (("a", 2.0), ("b", 3.0)):
        render_scripted_video(folder / f"{name}.mp4", default_script(seconds), duration_s=seconds, fps=10,
                              size=(320, 180))
    return folder / "a.mp4", folder / "b.mp4"


def _config(redis_url: str, out: Path, stride: int = 1) -> PipelineConfig:
    config = PipelineConfig()
    config.redis.url, config.output.dir, config.source.stride = redis_url, str(out), stride
    return config


def _frames(client: redis.Redis, source: str) -> list[int]:
    return [int(fields[b"frame"]) for _id, fields in client.xrange(KEYS.frames(source))]


def _status(client: redis.Redis, source: str) -> dict:
    return json.loads(client.hget(KEYS.sources, source))


def _model_flags(weights: Path, imgsz: int) -> list[str]:
    return ["--weights", str(weights), "--imgsz", str(imgsz), "--cpu-backend", "pytorch"]


def test_a_second_process_run_on_a_source_id_being_written_is_refused(
    redis_url: str, micro_video: tuple, clips: tuple, weights: Path, imgsz: int, tmp_path: Path,
    capsys: pytest.CaptureFixture
) -> None:
    client = redis.Redis.from_url(redis_url)
    first = subprocess.Popen(
        [str(Path(sys.executable).parent / "emotion-stream"), "process", str(micro_video[0]), *_model_flags(weights, imgsz),
         "--out", str(tmp_path / "first"), "--quiet", "--batch", "1", "--redis", redis_url, "--source-id", "same"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (client.exists(KEYS.claim("same")) or client.xlen(KEYS.frames("same"))) and first.poll() is None:
            threading.Event().wait(0.05)
        code = main(["process", str(clips[1]), *_model_flags(weights, imgsz), "--out", str(tmp_path / "second"),
                     "--quiet", "--redis", redis_url, "--source-id", "same"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 5 and len(err) == 1, err
        assert "source same: another run is writing it (process pid" in err[0] and "Traceback" not in err[0]
    finally:
        first.send_signal(subprocess.signal.SIGINT)  # the first run need not finish: what it wrote is its own
        first.communicate(timeout=120)
    assert first.returncode in (0, 130)
    frames = _frames(client, "same")
    assert frames == list(range(len(frames))) and _status(client, "same")["run"]["video"] == micro_video[0].name
    assert not client.exists(KEYS.claim("same")), "the run released its claim at its end"


def test_of_runs_claiming_one_source_at_once_exactly_one_gets_it(redis_url: str) -> None:
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def claim() -> None:
        claims = SourceClaims(redis.Redis.from_url(redis_url), KEYS, "process", ttl_s=30)
        start.wait()
        try:
            claims.claim("cam")
            outcomes.append("claimed")
        except SourceTaken as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("claimed") == 1
    assert all(outcome.startswith("source cam: another run is writing it") for outcome in outcomes if outcome != "claimed")


def test_a_live_runs_claim_is_renewed_and_a_crashed_runs_claim_expires(redis_url: str) -> None:
    code = ("import sys, time, redis\n"
            "from pipeline.core.contract import RedisKeys\n"
            "from pipeline.sinks.source_claims import SourceClaims\n"
            "claims = SourceClaims(redis.Redis.from_url(sys.argv[1]), RedisKeys(), 'process', ttl_s=0.6)\n"
            "claims.claim('cam'); claims.keep(); print('claimed', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, redis_url], stdout=subprocess.PIPE, text=True)
    later = SourceClaims(redis.Redis.from_url(redis_url), KEYS, "process", ttl_s=30)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        threading.Event().wait(2.0)  # several ttls: renewed all along
        with pytest.raises(SourceTaken, match="source cam: another run is writing it"):
            later.claim("cam")
    finally:
        holder.kill()  # a crash: no release
        holder.wait()
    deadline = time.monotonic() + 30
    while True:
        try:
            later.claim("cam")
            break
        except SourceTaken:
            assert time.monotonic() < deadline, "a crashed run's claim never expired"
            threading.Event().wait(0.1)
    later.release()
    assert not redis.Redis.from_url(redis_url).exists(KEYS.claim("cam"))


def test_serve_refuses_ids_of_a_process_run_or_being_written_and_reports_duplicates(
    redis_url: str, clips: tuple, detector: EmotionDetector, weights: Path, imgsz: int, tmp_path: Path,
    capsys: pytest.CaptureFixture
) -> None:
    a, b = clips
    client = redis.Redis.from_url(redis_url)
    process_video(_config(redis_url, tmp_path), a, "cam1", detector, show_progress=False)
    entries, status = client.xrange(KEYS.frames("cam1")), client.hget(KEYS.sources, "cam1")
    config = tmp_path / "serve.yaml"
    config.write_text(f"redis: {{url: '{redis_url}'}}\noutput: {{dir: '{tmp_path / 'serve'}'}}\n"
                      f"sources:\n  - {{id: cam1, uri: '{b}'}}\n  - {{id: cam2, uri: '{b}'}}\n"
                      f"  - {{id: cam3, uri: '{b}'}}\n")
    argv = ["serve", "--config", str(config), *_model_flags(weights, imgsz)]
    writing = SourceClaims(redis.Redis.from_url(redis_url), KEYS, "process", ttl_s=30)
    writing.claim("cam3")
    try:
        code = main(argv)
    finally:
        writing.release()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "cam1: failed, 0 frames" in out and "Redis holds a process run of a.mp4 under this id" in out
    assert "cam3: failed, 0 frames" in out and "source cam3: another run is writing it (process pid" in out
    assert "cam2: ended, 30 frames" in out and not client.exists(KEYS.frames("cam3"))
    assert client.xrange(KEYS.frames("cam1")) == entries and client.hget(KEYS.sources, "cam1") == status
    again = process_video(_config(redis_url, tmp_path), a, "cam1", detector, show_progress=False)
    assert again.redis_resumed == "ended" and again.redis_written == 0

    config.write_text(f"redis: {{url: '{redis_url}'}}\noutput: {{dir: '{tmp_path / 'serve'}'}}\n"
                      f"sources:\n  - {{id: cam2, uri: '{b}'}}\n")
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0 and "cam2: ended, 30 frames" in captured.out
    assert "cam2: Redis already held entries with the ids of 30 of its frames" in captured.err
    assert "; 0 frame entries were written" in captured.err
    assert client.xlen(KEYS.frames("cam2")) == 30


def test_a_file_that_cannot_be_read_leaves_its_ids_data_alone(
    redis_url: str, clips: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    a, b = clips
    client = redis.Redis.from_url(redis_url)
    process_video(_config(redis_url, tmp_path), b, "b", detector, show_progress=False)
    status = client.hget(KEYS.sources, "b")
    folder = tmp_path / "d1"
    folder.mkdir()
    (folder / "b.mp4").symlink_to(tmp_path / "gone.mp4")
    (folder / "c.mp4").symlink_to(a)
    reports = process_files(_config(redis_url, tmp_path / "out"), [folder / "b.mp4", folder / "c.mp4"], [detector],
                            show_progress=False)
    assert reports[0].source_problem and not reports[0].opened and reports[1].source_problem is None
    assert client.hget(KEYS.sources, "b") == status and _frames(client, "c") == list(range(20))
    again = process_video(_config(redis_url, tmp_path), b, "b", detector, show_progress=False)
    assert again.redis_resumed == "ended" and again.redis_written == 0


def test_replace_deletes_nothing_when_another_run_writes_one_of_the_ids(
    redis_url: str, clips: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    a, b = clips
    client = redis.Redis.from_url(redis_url)
    process_video(_config(redis_url, tmp_path), a, "a", detector, show_progress=False)
    first = client.xrange(KEYS.frames("a"))
    other = SourceClaims(redis.Redis.from_url(redis_url), KEYS, "serve", ttl_s=30)
    other.claim("b")
    try:
        with pytest.raises(SourceTaken, match="source b: another run is writing it"):
            process_files(_config(redis_url, tmp_path, stride=2), [a, b], [detector], show_progress=False, replace=True)
    finally:
        other.release()
    assert client.xrange(KEYS.frames("a")) == first, "a refused job deletes nothing"


def test_replace_replaces_a_key_of_another_type_under_a_later_files_id(
    redis_url: str, clips: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    a, b = clips
    client = redis.Redis.from_url(redis_url)
    process_video(_config(redis_url, tmp_path), a, "a", detector, show_progress=False)
    client.set(KEYS.frames("b"), "x")  # the job replaces what its ids hold, whatever its type
    reports = process_files(_config(redis_url, tmp_path, stride=2), [a, b], [detector], show_progress=False,
                            replace=True)
    assert all(report.redis_problem is None for report in reports)
    assert _frames(client, "a") == list(range(0, 20, 2)) and _frames(client, "b") == list(range(0, 30, 2))
    assert _status(client, "b")["run"]["stride"] == 2


def test_a_full_redis_does_not_hide_a_held_claim_and_replace_needs_a_stored_one(
    detector: EmotionDetector, clips: tuple[Path, Path], tmp_path: Path
) -> None:
    """Redis refuses `SET NX` with OOM even when the key is held: the claim looks, and `--replace`
    deletes nothing without a claim Redis stored."""
    keys = RedisKeys("emotion")
    with LocalRedisServer() as server:
        client = redis.Redis.from_url(server.url)
        process_video(_config(server.url, tmp_path / "first"), clips[0], "b", detector=detector, show_progress=False)
        holder = SourceClaims(redis.Redis.from_url(server.url), keys, "process", 30)
        holder.claim("z")
        client.config_set("maxmemory", 1)
        try:
            with pytest.raises(SourceTaken, match="source z: another run is writing it"):
                SourceClaims(redis.Redis.from_url(server.url), keys, "process", 30).claim("z")
            with pytest.raises(SinkError, match="cannot replace b: Redis refuses writes for now"):
                process_video(_config(server.url, tmp_path / "again", stride=2), clips[0], "b", detector=detector,
                              show_progress=False, replace=True)
            assert len(_frames(client, "b")) > 0
        finally:
            client.config_set("maxmemory", 0)
            holder.release()


@pytest.mark.parametrize(("first", "second"), [(1, 2), (2, 1)])
def test_one_id_is_one_source_in_both_layouts(clips: tuple, weights: Path, imgsz: int, redis_url: str,
                                              tmp_path: Path, capsys: pytest.CaptureFixture,
                                              first: int, second: int) -> None:
    """A run of the other contract version on an id another layout holds is refused (exit 5, naming it), also with
    --replace, which never deletes the other layout's keys."""
    a, b = clips
    client = redis.Redis.from_url(redis_url)
    common = [*_model_flags(weights, imgsz), "--redis", redis_url, "--source-id", "x", "--quiet"]
    assert main(["process", str(a), *common, "--out", str(tmp_path / "first"), "--contract", str(first)]) == 0
    held = client.xlen(RedisKeys("emotion", first).frames("x"))
    status = client.hget(KEYS.sources, "x")
    capsys.readouterr()
    for replace in ([], ["--replace"]):
        code = main(["process", str(b), *common, "--out", str(tmp_path / "second"), "--contract", str(second),
                     *replace])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 5 and f"a contract-{first} run" in err[-1] and "Traceback" not in "\n".join(err)
    assert client.xlen(RedisKeys("emotion", first).frames("x")) == held and client.hget(KEYS.sources, "x") == status
    assert not client.exists(RedisKeys("emotion", second).frames("x"))


def test_a_run_is_refused_while_a_run_of_the_other_layout_claims_the_id(
    clips: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    other = SourceClaims(redis.Redis.from_url(redis_url), RedisKeys("emotion", 2), "serve", 30.0)
    other.claim("x")  # a contract-2 run writing x now
    try:
        code = main(["process", str(clips[0]), *_model_flags(weights, imgsz), "--redis", redis_url, "--source-id",
                     "x", "--quiet", "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 5 and "source x: a contract-2 run is writing it (serve" in err[-1]
        assert not redis.Redis.from_url(redis_url).exists(KEYS.frames("x"), KEYS.claim("x"))
    finally:
        other.release()
