"""Re-runs against a real redis-server: idempotence keyed on what a run is, not on entry positions.

The same file with the same model and settings adds nothing (not even pub/sub messages);
another file or other settings under the same source id are refused, or replaced with
`replace`; an interrupted run is marked `interrupted` and a re-run resumes it cleanly.
"""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.core.config import PipelineConfig
from pipeline.core.errors import SinkError
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from pipeline.files.process import process_video
from pipeline.sinks.redis_server import LocalRedisServer
from training.synthetic_video import default_script, render_scripted_video


@pytest.fixture(scope="module")
def detector(weights: Path, imgsz: int) -> EmotionDetector:
    return EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz))


def _config(redis_url: str, out: Path, stride: int = 1) -> PipelineConfig:
    config = PipelineConfig()
    config.redis.url, config.output.dir, config.source.stride = redis_url, str(out), stride
    return config


def _frames(client: redis.Redis, source: str) -> list[int]:
    return [int(fields[b"frame"]) for _id, fields in client.xrange(f"emotion:frames:{source}")]


def _event_types(client: redis.Redis, source: str) -> list[str]:
    entries = client.xrange(f"emotion:events:{source}")
    return [(fields[b"state"] if fields[b"type"] == b"source_status" else fields[b"type"]).decode()
            for _id, fields in entries]


def test_other_settings_under_the_same_id_are_refused_and_replace_rewrites(
    redis_url: str, scripted_video: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    video, truth = scripted_video
    client = redis.Redis.from_url(redis_url)
    process_video(_config(redis_url, tmp_path, stride=2), video, "wt", detector, show_progress=False)
    halves = _frames(client, "wt")
    assert halves == list(range(0, len(truth), 2))
    with pytest.raises(SinkError, match="emotion:frames:wt holds .* another run: stride 2 there, 1 now.*--replace"):
        process_video(_config(redis_url, tmp_path), video, "wt", detector, show_progress=False)
    assert _frames(client, "wt") == halves
    report = process_video(_config(redis_url, tmp_path), video, "wt", detector, show_progress=False, replace=True)
    assert report.redis_written == len(truth) and _frames(client, "wt") == list(range(len(truth)))
    status = json.loads(client.hget("emotion:sources", "wt"))
    assert status["state"] == "ended" and status["run"]["stride"] == 1 and status["run"]["video"] == video.name
    assert _event_types(client, "wt").count("ended") == 1


def test_another_video_under_the_same_id_is_refused(
    redis_url: str, scripted_video: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    video, _truth = scripted_video
    other = tmp_path / "other.mp4"
    render_scripted_video(other, default_script(3.0), duration_s=3.0)
    process_video(_config(redis_url, tmp_path), other, "cam", detector, show_progress=False)
    before = _frames(redis.Redis.from_url(redis_url), "cam")
    with pytest.raises(SinkError, match="another run: video other.mp4 .*, scripted.mp4 now"):
        process_video(_config(redis_url, tmp_path), video, "cam", detector, show_progress=False)
    assert _frames(redis.Redis.from_url(redis_url), "cam") == before


def test_the_same_run_again_adds_nothing_not_even_messages(
    redis_url: str, scripted_video: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    video, truth = scripted_video
    client = redis.Redis.from_url(redis_url)
    process_video(_config(redis_url, tmp_path), video, "same", detector, show_progress=False)
    frames, events = client.xrange("emotion:frames:same"), client.xrange("emotion:events:same")
    status = client.hget("emotion:sources", "same")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("emotion:events")
    pubsub.get_message(timeout=1)
    again = process_video(_config(redis_url, tmp_path), video, "same", detector, show_progress=False)
    assert again.redis_written == 0 and again.redis_duplicates == len(truth) and again.redis_resumed == "ended"
    assert pubsub.get_message(timeout=0.5) is None
    assert client.xrange("emotion:frames:same") == frames and client.xrange("emotion:events:same") == events
    assert client.hget("emotion:sources", "same") == status


def test_an_interrupted_run_is_marked_interrupted_and_a_rerun_resumes_it(
    redis_url: str, micro_video: tuple, weights: Path, imgsz: int, tmp_path: Path
) -> None:
    video, truth = micro_video
    client = redis.Redis.from_url(redis_url)
    argv = [str(Path(sys.executable).parent / "emotion-stream"), "process", str(video), "--weights", str(weights),
            "--imgsz", str(imgsz), "--out", str(tmp_path), "--cpu-backend", "pytorch", "--quiet",
            "--batch", "1", "--redis", redis_url, "--source-id", "talk"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while client.xlen("emotion:frames:talk") < 10 and run.poll() is None:
        threading.Event().wait(0.05)
    run.send_signal(subprocess.signal.SIGINT)
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted" in err
    first = _frames(client, "talk")
    assert 0 < len(first) < len(truth) and first == list(range(len(first)))
    assert json.loads(client.hget("emotion:sources", "talk"))["state"] == "interrupted"
    assert _event_types(client, "talk")[-1] == "interrupted" and "face_exit" not in _event_types(client, "talk")

    started = time.time()
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed the interrupted run" in rerun.stdout
    assert _frames(client, "talk") == list(range(len(truth)))
    types = _event_types(client, "talk")
    assert [t for t in types if t in ("live", "interrupted", "ended")] == ["live", "interrupted", "ended"]
    assert types.count("face_exit") == types.count("face_enter") > 0
    status = json.loads(client.hget("emotion:sources", "talk"))
    assert status["state"] == "ended" and status["frames"] == len(truth) and status["last_ts"] >= started * 1000


def test_an_interrupted_job_of_many_files_counts_only_unfinished_files_as_interrupted(
    redis_url: str, micro_video: tuple, weights: Path, imgsz: int, tmp_path: Path
) -> None:
    """Files processed one at a time; SIGINT once the short first file ended: it stays complete."""
    short = tmp_path / "short.mp4"
    render_scripted_video(short, default_script(1.0), duration_s=1.0, fps=10, size=(320, 180))
    client = redis.Redis.from_url(redis_url)
    config = tmp_path / "one-at-a-time.yaml"
    config.write_text("batching:\n  open_files: 1\n")
    argv = [str(Path(sys.executable).parent / "emotion-stream"), "process", str(short), str(micro_video[0]),
            "--weights", str(weights), "--imgsz", str(imgsz), "--out", str(tmp_path / "out"), "--cpu-backend",
            "pytorch", "--quiet", "--batch", "1", "--redis", redis_url, "--config", str(config)]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while client.xlen("emotion:frames:interview") < 10 and run.poll() is None:
        threading.Event().wait(0.05)
    run.send_signal(subprocess.signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert json.loads(client.hget("emotion:sources", "short"))["state"] == "ended"
    assert json.loads(client.hget("emotion:sources", "interview"))["state"] == "interrupted"
    assert "2 files: 1 complete, 1 interrupted (interview)" in out


def test_ctrl_c_while_the_end_waits_for_redis_keeps_the_summaries(
    micro_video: tuple, weights: Path, imgsz: int, tmp_path: Path
) -> None:
    """Redis dies mid-run; the first SIGINT stops the run, the second comes while the end waits for
    Redis: the wait is cut short, and the summary and the spill of what was not written are kept."""
    config = tmp_path / "patient.yaml"
    config.write_text("redis:\n  timeout_s: 60\n")
    with LocalRedisServer() as server:
        client = redis.Redis.from_url(server.url)
        argv = [str(Path(sys.executable).parent / "emotion-stream"), "process", str(micro_video[0]), "--weights",
                str(weights), "--imgsz", str(imgsz), "--out", str(tmp_path), "--cpu-backend", "pytorch", "--quiet",
                "--batch", "1", "--redis", server.url, "--config", str(config), "--source-id", "talk"]
        run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while client.xlen("emotion:frames:talk") < 5 and run.poll() is None:
            threading.Event().wait(0.05)
        server.kill()
        threading.Event().wait(1.0)
        run.send_signal(subprocess.signal.SIGINT)
        threading.Event().wait(3.0)
        run.send_signal(subprocess.signal.SIGINT)
        out, err = run.communicate(timeout=100)
    assert run.returncode in (5, 130) and "Traceback" not in err, err
    summary = json.loads((tmp_path / "talk" / "summary.json").read_text())
    assert summary["interrupted"] and summary["frames"] > 5
    assert "not written" in summary["redis_problem"] and list(tmp_path.glob("talk/redis-spill-*.jsonl"))
