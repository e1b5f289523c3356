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

from pipeline.core.config import PipelineConfig, load_config
from pipeline.core.contract import RedisKeys
from pipeline.files.process import JobProgress, process_files
from tests.contract import file_records, redis_records
from training.synthetic_faces import FER_CLASSES
from training.synthetic_video import ScriptedFace, default_script, render_scripted_video

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


class _StopAfter(JobProgress):
    """Asks the run to stop, as SIGINT does, once `frames` frames reached the outputs."""

    def __init__(self, frames: int, stop: threading.Event) -> None:
        super().__init__()
        self.frames, self.stop = frames, stop

    def add(self, expected: int = 0, written: int = 0) -> None:
        super().add(expected, written)
        if self.counts().written >= self.frames:
            self.stop.set()


def _resumable_config(redis_url: str, out: Path) -> PipelineConfig:
    config = load_config(overrides={"model.weights": _weights(), "model.cpu_backend": "pytorch", "batching.batch": 8,
                                    "batching.queue_size": 4, "batching.open_files": 1, "redis.url": redis_url,
                                    "output.dir": str(out), "events.exit_after_s": 5.0})
    return config


@pytest.fixture(scope="module")
def leaving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s at 15 fps, one of two people walking out of the picture half way through."""
    first = tuple((i * 1.0, FER_CLASSES[i % 7]) for i in range(12))
    second = tuple((i * 1.0, FER_CLASSES[(i + 3) % 7]) for i in range(12))
    script = [ScriptedFace(seed=11, start=(0.05, 0.12), end=(2.4, 0.30), size=0.42, segments=first),
              ScriptedFace(seed=23, start=(0.70, 0.45), end=(0.64, 0.15), size=0.34, segments=second)]
    path = tmp_path_factory.mktemp("leaving") / "leaving.mp4"
    render_scripted_video(path, script, duration_s=12.0, fps=15, size=(320, 180))
    return path


def test_a_resumed_job_writes_what_an_uninterrupted_one_writes(leaving: Path, redis_url: str, tmp_path: Path) -> None:
    """Stopped mid-file (the decoders a few frames ahead at most), then run again: Redis holds one computation of
    every frame, the file's own, and every event an uninterrupted run writes (a face that left just before the
    stop included), each once, under the ids events.jsonl gives them."""
    client = redis.Redis.from_url(redis_url)
    video = leaving
    clean = process_files(_resumable_config(redis_url, tmp_path / "clean"), [video], show_progress=False,
                          source_ids=["clean"])
    assert not clean[0].interrupted
    stop = threading.Event()
    first = process_files(_resumable_config(redis_url, tmp_path / "first"), [video], show_progress=False,
                          source_ids=["talk"], progress=_StopAfter(48, stop), stop=stop)
    assert first[0].interrupted and 0 < client.xlen("emotion:frames:talk") < 180, "the first run must stop mid-file"
    process_files(_resumable_config(redis_url, tmp_path / "second"), [video], show_progress=False, source_ids=["talk"])
    keys = RedisKeys()
    frames, events, status = redis_records(client, keys, "talk")
    clean_frames, clean_events, _status = redis_records(client, keys, "clean")
    assert status["state"] == "ended"
    assert [(f["frame"], f["pts"], f["faces"]) for f in frames] == [(f["frame"], f["pts"], f["faces"]) for f in clean_frames]

    def what(event: dict) -> tuple:
        return tuple(sorted((key, json.dumps(value)) for key, value in event.items()
                            if key not in ("event_id", "ts", "source")))

    faces = [event for event in events if event["type"] != "source_status"]
    assert sorted(map(what, faces)) == sorted(what(e) for e in clean_events if e["type"] != "source_status")
    assert [event["state"] for event in events if event["type"] == "source_status"] == ["live", "interrupted", "ended"]
    _file_frames, file_events = file_records(tmp_path / "second" / "talk")
    written = {event["event_id"]: event["type"] for event in events}
    assert all(written.get(event["event_id"]) == event["type"] for event in file_events), \
        "events.jsonl names every event by the id Redis holds it under"


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


@pytest.mark.skipif(shutil.which("ray") is None and not os.path.exists(Path(sys.executable).parent / "ray"),
                    reason="Ray is not installed (pip install 'emotion-stream[cluster]')")
def test_a_file_has_the_same_id_on_a_fleet_as_on_one_machine(job: Path, tmp_path: Path) -> None:
    """A symbolic link is named after the link on both, so an archive is never written twice under two ids."""
    link = tmp_path / "interview.mp4"
    link.symlink_to(job / "small.mp4")
    environment = os.environ | {"RAY_AUTH_MODE": "disabled"}
    environment.pop("RAY_ADDRESS", None)
    (tmp_path / "fleet.yaml").write_text("fleet: {cpus_per_actor: 1}\n")
    for name, extra in (("plain", []), ("fleet", ["--cluster", "local", "--config", str(tmp_path / "fleet.yaml")])):
        run = subprocess.run([EMOTION_STREAM, "process", str(link), "--weights", _weights(), "--out",
                              str(tmp_path / name), "--quiet", *extra], capture_output=True, text=True, timeout=600,
                             env=environment, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert [folder.name for folder in (tmp_path / name).iterdir()] == ["interview"], name
