"""A file's faces depend only on the file, the model and the settings: alone, in a job with a file of another
size, in two runs of that job, resumed after an interruption, and on a Ray fleet, frame by frame and exactly.

PyTorch on the CPU is the runtime where this is hardest: its kernels round a frame's scores differently in
batches of other sizes, so equality here needs a file's batches to be the file's own (see `files.feed`), and
its letterbox its own (see `engine.preprocess`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from training.synthetic_video import default_script, render_scripted_video

EMOTION_STREAM = str(Path(sys.executable).parent / "emotion-stream")


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two scripted videos of different sizes: 176x144 (carphone's) and 640x272."""
    folder = tmp_path_factory.mktemp("job")
    render_scripted_video(folder / "small.mp4", default_script(4.0), duration_s=4.0, fps=15, size=(176, 144))
    render_scripted_video(folder / "wide.mp4", default_script(4.0), duration_s=4.0, fps=15, size=(640, 272), seed=3)
    for truth in folder.glob("*.truth.json"):
        truth.unlink()
    return folder


def _process(target: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([EMOTION_STREAM, "process", str(target), "--weights", _weights(), "--out", str(out),
                           "--cpu-backend", "pytorch", "--batch", "8", "--quiet", *extra],
                          capture_output=True, text=True, timeout=600)


def _weights() -> str:
    from training.demo_model import SHIPPED_WEIGHTS

    return str(SHIPPED_WEIGHTS)


def _faces(lines: list[str]) -> list[tuple]:
    """Frame number, time and faces of every frame (not the wall-clock time it was written)."""
    records = [json.loads(line) for line in lines]
    return [(record["frame"], record["pts"], record["faces"]) for record in records]


def _timeline(out: Path, source: str) -> list[tuple]:
    return _faces((out / source / "timeline.jsonl").read_text().splitlines())


@pytest.fixture(scope="module")
def alone(job: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    """The small file's faces when it is the only file of its job."""
    out = tmp_path_factory.mktemp("alone")
    run = _process(job / "small.mp4", out, "--source-id", "small")
    assert run.returncode == 0, run.stderr
    faces = _timeline(out, "small")
    assert len(faces) == 60 and sum(len(frame[2]) for frame in faces) >= 60, "the comparison needs faces"
    return faces


def test_a_file_has_the_same_faces_alone_and_in_two_runs_of_a_mixed_job(job: Path, alone: list[tuple],
                                                                       tmp_path: Path) -> None:
    for run_number in (1, 2):
        out = tmp_path / f"run{run_number}"
        run = _process(job, out)
        assert run.returncode == 0, run.stderr
        assert _timeline(out, "small") == alone, f"run {run_number} of the mixed job"
    assert _timeline(tmp_path / "run1", "wide") == _timeline(tmp_path / "run2", "wide")


def test_a_resumed_job_writes_the_faces_of_the_file_alone(job: Path, alone: list[tuple], redis_url: str,
                                                         tmp_path: Path) -> None:
    """Interrupted mid-job (SIGINT), then run again: Redis holds one computation, the file's own."""
    client = redis.Redis.from_url(redis_url)
    argv = [EMOTION_STREAM, "process", str(job), "--weights", _weights(), "--out", str(tmp_path),
            "--cpu-backend", "pytorch", "--batch", "8", "--quiet", "--redis", redis_url]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while client.xlen("emotion:frames:small") < 20 and first.poll() is None:
        threading.Event().wait(0.02)
    first.send_signal(subprocess.signal.SIGINT)
    _out, err = first.communicate(timeout=120)
    assert first.returncode in (0, 130), err
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    entries = client.xrange("emotion:frames:small")
    written = [(int(fields[b"frame"]), float(fields[b"pts"]), json.loads(fields[b"faces"])) for _id, fields in entries]
    assert written == [(frame, round(pts, 3), faces) for frame, pts, faces in alone]


@pytest.mark.skipif(shutil.which("ray") is None and not os.path.exists(Path(sys.executable).parent / "ray"),
                    reason="Ray is not installed (pip install 'emotion-stream[cluster]')")
def test_a_file_has_the_same_faces_on_a_ray_fleet(job: Path, alone: list[tuple], tmp_path: Path) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_text("fleet: {cpus_per_actor: 1}\n")
    environment = os.environ | {"RAY_AUTH_MODE": "disabled"}
    environment.pop("RAY_ADDRESS", None)
    run = subprocess.run([EMOTION_STREAM, "process", "--cluster", "local", str(job), "--weights", _weights(),
                          "--config", str(config), "--out", str(tmp_path), "--cpu-backend", "pytorch", "--batch", "8",
                          "--quiet"], capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert _timeline(tmp_path, "small") == alone
