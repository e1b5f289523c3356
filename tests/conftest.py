"""Shared fixtures: a real redis-server, the tiny trained model, real H.264 videos."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import redis

from pipeline.sinks.redis_server import LocalRedisServer
from training.demo_model import DEMO_IMGSZ, demo_model
from training.synthetic_video import FaceTruth, default_script, render_scripted_video


@pytest.fixture(scope="session")
def redis_server() -> LocalRedisServer:
    """One redis-server process on a free port for the whole session."""
    with LocalRedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedisServer) -> str:
    """The session server's URL, emptied before each test."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def weights() -> Path:
    """The tiny emotion detector trained on synthetic scenes (trained once, cached)."""
    return demo_model(verbose=False)


@pytest.fixture(scope="session")
def imgsz() -> int:
    """The image size the tiny model was trained at."""
    return DEMO_IMGSZ


@pytest.fixture(scope="session")
def scripted_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[FaceTruth]]]:
    """A 10 s, 15 fps H.264 video of two faces following the default script, and its truth."""
    path = tmp_path_factory.mktemp("video") / "scripted.mp4"
    truth = render_scripted_video(path, default_script())
    return path, truth


@pytest.fixture(scope="session")
def camera_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40 s, 15 fps H.264 MP4 of scripted faces for RTSP cameras to serve."""
    path = tmp_path_factory.mktemp("camera") / "camera.mp4"
    render_scripted_video(path, default_script(40.0), duration_s=40.0, fps=15, size=(480, 270))
    return path


@pytest.fixture(scope="session")
def micro_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """12 s at 30 fps: two moving faces, scripted changes and planted 2-4 frame flashes."""
    from training.synthetic_video import micro_expression_script

    path = tmp_path_factory.mktemp("micro") / "interview.mp4"
    script = micro_expression_script()
    truth = render_scripted_video(path, script, duration_s=12.0, fps=30)
    return path, truth


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop helper processes libraries leave behind (OpenVINO's telemetry sender waits on the
    network), so the test run ends when the tests do."""
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(timeout=5)
