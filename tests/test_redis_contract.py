"""The Redis sink against a real redis-server: contract v1 field by field, no duplicates."""

import json
import time
from pathlib import Path

import pytest
import redis

from pipeline.core.config import PipelineConfig
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from pipeline.files.process import process_video
from pipeline.sinks.redis_server import free_port
from training.synthetic_faces import FER_CLASSES

CONTRACT_FIELDS = {"v", "frame", "pts", "ts", "faces", "model", "lat"}


@pytest.fixture(scope="module")
def detector(weights: Path, imgsz: int) -> EmotionDetector:
    return EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz))


def _config(redis_url: str | None, out: Path, **redis_settings) -> PipelineConfig:
    config = PipelineConfig()
    config.redis.url, config.output.dir = redis_url, str(out)
    for key, value in redis_settings.items():
        setattr(config.redis, key, value)
    return config


def _entries(url: str, key: str) -> list[tuple[str, dict[str, str]]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    return client.xrange(key)


def test_frames_stream_matches_the_contract_field_by_field(
    redis_url: str, scripted_video: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    video, truth = scripted_video
    started_ms = time.time() * 1000
    report = process_video(_config(redis_url, tmp_path), video, "interview-01", detector, show_progress=False)
    finished_ms = time.time() * 1000
    entries = _entries(redis_url, "emotion:frames:interview-01")
    assert len(entries) == len(truth) == report.summary.frames
    faces_seen = 0
    previous_id = (-1, -1)
    for index, (entry_id, fields) in enumerate(entries):
        assert set(fields) == CONTRACT_FIELDS
        assert fields["v"] == "1"
        assert int(fields["frame"]) == index
        assert float(fields["pts"]) == pytest.approx(index / 15, abs=1e-3)
        assert started_ms - 1000 <= int(fields["ts"]) <= finished_ms
        assert fields["model"] == detector.model_id
        assert 0 <= int(fields["lat"]) <= finished_ms - int(fields["ts"])
        ms, seq = (int(part) for part in entry_id.split("-"))
        assert (ms, seq) > previous_id and ms == round(float(fields["pts"]) * 1000)
        previous_id = (ms, seq)
        for face in json.loads(fields["faces"]):
            faces_seen += 1
            assert set(face) == {"id", "box", "emotion", "score", "scores"}
            assert face["id"] is None or isinstance(face["id"], int)
            x1, y1, x2, y2 = face["box"]
            assert 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 270
            assert face["emotion"] in FER_CLASSES
            assert set(face["scores"]) == set(FER_CLASSES)
            assert face["scores"][face["emotion"]] == pytest.approx(face["score"], abs=1e-4)
            assert 0.25 <= face["score"] <= 1
    assert faces_seen > len(entries), "two scripted faces per frame should mostly be found"
    status = json.loads(redis.Redis.from_url(redis_url).hget("emotion:sources", "interview-01"))
    assert status["state"] == "ended"
    assert status["frames"] == len(entries) and status["dropped"] == 0
    assert status["uri"].endswith("scripted.mp4") and status["fps"] > 0


def test_rerunning_a_file_adds_no_duplicates(
    redis_url: str, scripted_video: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    video, truth = scripted_video
    first = process_video(_config(redis_url, tmp_path), video, "again", detector, show_progress=False)
    second = process_video(_config(redis_url, tmp_path), video, "again", detector, show_progress=False)
    assert first.redis_written == len(truth) and first.redis_duplicates == 0
    assert second.redis_written == 0 and second.redis_duplicates == len(truth)
    assert len(_entries(redis_url, "emotion:frames:again")) == len(truth)


def test_maxlen_trims_the_stream_approximately(
    redis_url: str, scripted_video: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    video, truth = scripted_video
    process_video(_config(redis_url, tmp_path, maxlen=20), video, "short", detector, show_progress=False)
    remaining = _entries(redis_url, "emotion:frames:short")
    assert 20 <= len(remaining) < len(truth)
    assert int(remaining[-1][1]["frame"]) == len(truth) - 1


def test_custom_prefix(redis_url: str, scripted_video: tuple, detector: EmotionDetector, tmp_path: Path) -> None:
    video, truth = scripted_video
    process_video(_config(redis_url, tmp_path, prefix="acme"), video, "cam", detector, show_progress=False)
    assert len(_entries(redis_url, "acme:frames:cam")) == len(truth)
    assert redis.Redis.from_url(redis_url).hexists("acme:sources", "cam")


def test_unreachable_redis_is_reported_and_files_are_still_written(
    scripted_video: tuple, detector: EmotionDetector, tmp_path: Path
) -> None:
    video, truth = scripted_video
    url = f"redis://127.0.0.1:{free_port()}/0"
    config = _config(url, tmp_path)
    config.redis.timeout_s = 0.5
    report = process_video(config, video, "offline", detector, show_progress=False)
    assert report.redis_problem is not None and url in report.redis_problem
    lines = (tmp_path / "offline" / "timeline.jsonl").read_text().splitlines()
    assert len(lines) == len(truth)
