"""`serve` with real RTSP servers, a real redis-server and files: drops, reconnects, outages, shutdown."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.core.config import PipelineConfig, SourceSpec
from pipeline.core.contract import RedisKeys
from pipeline.live.serve import serve
from pipeline.sinks.redis_server import LocalRedisServer, free_port
from tests.contract import assert_same_records, file_records, redis_records
from tests.rtsp import RtspServer
from tests.videos import ffprobe_decoded_frames, gradient_frames, truncate, write_video


def _config(weights: Path, imgsz: int, out: Path, sources: list[SourceSpec], redis_url: str | None) -> PipelineConfig:
    config = PipelineConfig()
    config.model.weights, config.model.imgsz = str(weights), imgsz
    config.redis.url, config.redis.spill_dir = redis_url, str(out / "spill")
    config.output.dir = str(out)
    config.batching.batch = 8
    config.live.backoff_initial_s, config.live.backoff_max_s = 0.2, 1.0
    config.live.connect_attempts = 2
    config.metrics.log_interval_s = 2.0
    config.sources = sources
    return config


def _timeline(out: Path, source: str) -> list[dict]:
    return [json.loads(line) for line in (out / source / "timeline.jsonl").read_text().splitlines()]


def _events(url: str, source: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    entries = client.xrange(f"emotion:events:{source}")
    return [fields["state"] for _id, fields in entries if fields["type"] == "source_status"]


def _after(seconds: float, action) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_four_cameras_and_a_file_share_one_detector(
    weights: Path, imgsz: int, camera_video: Path, scripted_video: tuple, redis_url: str, tmp_path: Path
) -> None:
    cams = [f"cam{i}" for i in range(1, 5)]
    with RtspServer({cam: camera_video for cam in cams}) as server:
        sources = [SourceSpec(cam, server.url(cam)) for cam in cams]
        sources.append(SourceSpec("recording", str(scripted_video[0])))
        report = serve(_config(weights, imgsz, tmp_path, sources, redis_url), max_seconds=14)
    assert report.states["recording"] == "ended"
    recording = _timeline(tmp_path, "recording")
    assert [row["frame"] for row in recording] == list(range(len(scripted_video[1])))  # files never drop
    assert report.dropped["recording"] == 0
    client = redis.Redis.from_url(redis_url)
    for cam in cams:
        rows = _timeline(tmp_path, cam)
        assert len(rows) >= 60, f"{cam} delivered too few frames"
        assert sum(len(row["faces"]) for row in rows) >= len(rows), f"{cam}: faces should be found"
        assert client.xlen(f"emotion:frames:{cam}") == len(rows)
        assert _events(redis_url, cam)[:1] == ["live"] or "live" in _events(redis_url, cam)
        status = json.loads(client.hget("emotion:sources", cam))
        assert status["uri"] == server.url(cam) and status["frames"] == len(rows)
    assert "ended" in _events(redis_url, "recording")


def test_rtsp_server_killed_and_restarted_source_reconnects_others_never_pause(
    weights: Path, imgsz: int, camera_video: Path, redis_url: str, tmp_path: Path
) -> None:
    steady = RtspServer({"cam2": camera_video, "cam3": camera_video}).start()
    flaky = RtspServer({"cam1": camera_video}).start()
    try:
        sources = [SourceSpec("cam1", flaky.url("cam1")), SourceSpec("cam2", steady.url("cam2")),
                   SourceSpec("cam3", steady.url("cam3"))]
        config = _config(weights, imgsz, tmp_path, sources, redis_url)
        config.live.read_timeout_s = 2.0
        timers = [_after(5, flaky.kill), _after(8, flaky.start)]
        report = serve(config, max_seconds=18)
        for timer in timers:
            timer.join()
    finally:
        flaky.kill()
        steady.kill()
    states = _events(redis_url, "cam1")
    assert states[0] == "live" and "reconnecting" in states
    assert states.index("reconnecting") < len(states) - 1 - states[::-1].index("live"), "live again after"
    assert report.reconnects["cam1"] >= 1 and states[-1] == "ended"
    for cam in ("cam2", "cam3"):
        times = [row["ts"] for row in _timeline(tmp_path, cam)]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) < 2000, f"{cam} paused while cam1 was down"
        assert report.reconnects[cam] == 0


def test_redis_killed_and_restarted_every_frame_lands_exactly_once(
    weights: Path, imgsz: int, camera_video: Path, scripted_video: tuple, tmp_path: Path
) -> None:
    with LocalRedisServer(persist=True) as store, RtspServer({"cam1": camera_video}) as cameras:
        sources = [SourceSpec("cam1", cameras.url("cam1")), SourceSpec("recording", str(scripted_video[0]))]
        config = _config(weights, imgsz, tmp_path, sources, store.url)
        config.redis.timeout_s = 1.0
        config.redis.buffer_entries = 50  # force a spill to disk during the outage
        timers = [_after(4, store.kill), _after(9, store.start)]
        report = serve(config, max_seconds=16)
        for timer in timers:
            timer.join()
        assert report.redis_unwritten == 0
        client = redis.Redis.from_url(store.url, decode_responses=True)
        for source in ("cam1", "recording"):
            processed = [row["frame"] for row in _timeline(tmp_path, source)]
            stored = [int(fields["frame"]) for _id, fields in client.xrange(f"emotion:frames:{source}")]
            assert stored == processed, f"{source}: Redis must hold every processed frame exactly once"
            assert len(processed) > 60
            # the records replayed from the spill are the contract's, the same as the files'
            frames, events, _status = redis_records(redis.Redis.from_url(store.url), RedisKeys(), source)
            file_frames, file_events = file_records(tmp_path / source)
            assert_same_records(frames, file_frames)
            went_live = next(n for n, event in enumerate(events) if event.get("state") == "live")
            assert_same_records(events[went_live:], file_events, ())  # the files begin when the source does


def test_unreachable_uri_and_wrong_credentials_fail_clearly_without_disturbing_others(
    weights: Path, imgsz: int, camera_video: Path, redis_url: str, tmp_path: Path
) -> None:
    with RtspServer({"cam1": camera_video, "locked": camera_video}, user="admin", password="s3cret@word") as server:
        sources = [
            SourceSpec("good", server.url("cam1", "admin", "s3cret@word")),  # an @ in the password
            SourceSpec("badpass", server.url("locked", "admin", "wrong@pass")),
            SourceSpec("nowhere", f"rtsp://127.0.0.1:{free_port()}/stream"),
        ]
        report = serve(_config(weights, imgsz, tmp_path, sources, redis_url), max_seconds=10)
    assert report.states == {"good": "ended", "badpass": "failed", "nowhere": "failed"}
    assert _events(redis_url, "good") == ["live", "ended"]
    client = redis.Redis.from_url(redis_url)
    badpass = json.loads(client.hget("emotion:sources", "badpass"))
    assert "wrong credentials" in badpass["reason"]
    assert badpass["uri"].startswith("rtsp://admin:***@127.0.0.1:") and "pass" not in badpass["uri"]
    good = json.loads(client.hget("emotion:sources", "good"))
    assert good["uri"].startswith("rtsp://admin:***@127.0.0.1:") and "word" not in good["uri"]
    assert "connection refused" in json.loads(client.hget("emotion:sources", "nowhere"))["reason"]
    assert len(_timeline(tmp_path, "good")) >= 60
    readable = redis.Redis.from_url(redis_url, decode_responses=True)
    everything = json.dumps([fields for _id, fields in readable.xrange("emotion:events:badpass")])
    assert "s3cret" not in everything and "wrong@" not in everything and "@pass" not in everything


def test_sigterm_stops_flushes_and_exits_zero(
    weights: Path, imgsz: int, camera_video: Path, redis_url: str, tmp_path: Path
) -> None:
    with RtspServer({"cam1": camera_video}) as server:
        config_file = tmp_path / "cameras.yaml"
        config_file.write_text(
            f"model: {{weights: {weights}, imgsz: {imgsz}}}\n"
            f"redis: {{url: '{redis_url}'}}\n"
            f"output: {{dir: {tmp_path / 'out'}}}\n"
            f"sources:\n  - {{id: cam1, uri: '{server.url('cam1')}'}}\n"
        )
        script = Path(sys.executable).parent / "emotion-stream"
        run = subprocess.Popen([str(script), "serve", "--config", str(config_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        client = redis.Redis.from_url(redis_url)
        for _ in range(400):
            if client.xlen("emotion:frames:cam1") > 30:
                break
            threading.Event().wait(0.05)
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=15)
    assert run.returncode == 0, err
    assert "cam1: ended" in out
    processed = len((tmp_path / "out" / "cam1" / "timeline.jsonl").read_text().splitlines())
    assert processed > 30 and client.xlen("emotion:frames:cam1") == processed
    assert json.loads(client.hget("emotion:sources", "cam1"))["state"] == "ended"


def test_metrics_endpoint_and_periodic_line(
    weights: Path, imgsz: int, scripted_video: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import urllib.request

    port = free_port()
    config = _config(weights, imgsz, tmp_path, [SourceSpec("clip", str(scripted_video[0]), loop=True)], None)
    config.metrics.port, config.metrics.log_interval_s = port, 1.0
    scraped: list[str] = []
    live = 'emotion_source_state{source="clip",state="live"} 1.0'

    def scrape() -> None:
        """Scrape until the source is live with frames counted (a loaded machine starts late)."""
        for _ in range(60):
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            if live in text and 'emotion_frames_total{source="clip"}' in text:
                break
            time.sleep(0.25)
        scraped.append(text)

    timer = _after(2, scrape)
    with caplog.at_level("INFO", logger="pipeline.core.metrics"):
        report = serve(config, realtime_files=True, max_seconds=10)
    timer.join()
    text = scraped[0]
    assert 'emotion_frames_total{source="clip"}' in text
    assert live in text
    assert "emotion_dropped_frames_total" in text and "emotion_reconnects_total" in text
    lines = [record.getMessage() for record in caplog.records if record.name == "pipeline.core.metrics"]
    assert any(line.startswith("clip ") and "fps drop" in line and "[live]" in line for line in lines)
    assert 'emotion_stage_busy_ratio{stage="inference"}' in text and 'emotion_queue_depth{queue="sinks"}' in text
    engine_lines = [line for line in lines if line.startswith("engine: ")]
    assert engine_lines and all("inference" in line and "queues" in line for line in engine_lines)
    assert report.frames["clip"] > 30 and "inference" in report.stages


def test_a_killed_decoder_is_restarted_for_a_camera_and_fails_a_file(
    weights: Path, imgsz: int, camera_video: Path, redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL both decoders mid-stream: the camera's decoder is restarted and frames go on with
    their numbering; the file is failed with the reason rather than decoded again from its start."""
    import multiprocessing

    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def kill_decoders_once_both_write() -> None:  # not at a fixed time: a loaded machine starts slowly
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [json.loads(client.hget("emotion:sources", source) or "{}") for source in ("cam", "clip")]
            if all(state.get("state") == "live" and state.get("frames", 0) >= 10 for state in states):
                break
            time.sleep(0.1)
        for child in multiprocessing.active_children():
            if child.name.startswith("decoder-"):
                os.kill(child.pid, signal.SIGKILL)

    def kill_then_stop(stop: threading.Event) -> None:
        kill_decoders_once_both_write()
        time.sleep(6)  # the camera's decoder comes back and delivers frames again
        stop.set()

    with RtspServer({"cam": camera_video}) as server:
        sources = [SourceSpec("cam", server.url("cam")), SourceSpec("clip", str(camera_video))]
        config = _config(weights, imgsz, tmp_path, sources, redis_url)
        config.batching.batch = 1  # the file is still decoding when the kill comes
        stop = threading.Event()
        killer = threading.Thread(target=kill_then_stop, args=(stop,))
        killer.start()
        report = serve(config, realtime_files=True, stop=stop)
        killer.join()
    assert report.reconnects["cam"] >= 1 and report.states["cam"] == "ended"
    frames = [row["frame"] for row in _timeline(tmp_path, "cam")]
    assert frames == sorted(set(frames)) and frames[-1] > frames[len(frames) // 2] + 20
    assert report.states["clip"] == "failed" and "decoder process exited" in _source_reason(redis_url, "clip")
    clip = [row["frame"] for row in _timeline(tmp_path, "clip")]
    assert clip == list(range(len(clip))), "a file's frames are never decoded twice"


def _source_reason(url: str, source: str) -> str:
    client = redis.Redis.from_url(url, decode_responses=True)
    return json.loads(client.hget("emotion:sources", source)).get("reason", "")


def test_a_spill_left_by_a_serve_of_other_sources_is_not_replayed_into_them(
    weights: Path, imgsz: int, scripted_video: tuple, tmp_path: Path
) -> None:
    """Serve `cam2` while Redis is down (its results spill), then serve `other2` with Redis up: cam2's
    spilled commands wait for a serve of cam2 and never reach Redis unclaimed; other2 is written."""
    port = free_port()
    down = _config(weights, imgsz, tmp_path, [SourceSpec("cam2", str(scripted_video[0]))],
                   f"redis://127.0.0.1:{port}/0")
    down.redis.timeout_s = 0.5
    serve(down)
    spilled = [path for path in (tmp_path / "spill").glob("serve*.jsonl") if "rejected" not in path.name]
    assert len(spilled) == 1 and spilled[0].stat().st_size > 0
    with LocalRedisServer(port=port) as server:
        report = serve(_config(weights, imgsz, tmp_path, [SourceSpec("other2", str(scripted_video[0]))], server.url))
        client = redis.Redis.from_url(server.url)
        assert not client.exists("emotion:frames:cam2") and client.hget("emotion:sources", "cam2") is None
        assert client.xlen("emotion:frames:other2") == report.frames["other2"] > 0
    assert spilled[0].stat().st_size > 0


def test_a_damaged_file_is_served_past_its_damage_and_a_truncated_one_fails(
    weights: Path, imgsz: int, redis_url: str, tmp_path: Path
) -> None:
    """A file source in `serve` is read as `process` reads it: damaged packets skipped and counted,
    every frame FFmpeg decodes kept; a file cut short fails with the reason."""
    damaged = write_video(tmp_path / "damaged.mp4", gradient_frames(120), fps=30)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 300] = random.Random(1).randbytes(300)
    damaged.write_bytes(data)
    cut = truncate(write_video(tmp_path / "cut.mkv", gradient_frames(60), fps=30), 0.5)
    sources = [SourceSpec("damaged", str(damaged)), SourceSpec("cut", str(cut))]
    report = serve(_config(weights, imgsz, tmp_path, sources, redis_url))
    client = redis.Redis.from_url(redis_url)
    status = json.loads(client.hget("emotion:sources", "damaged"))
    assert status["state"] == "ended" and status["damaged_packets"] > 0 and "damaged packet" in status["reason"]
    assert client.xlen("emotion:frames:damaged") == report.frames["damaged"] == ffprobe_decoded_frames(damaged)
    cut_status = json.loads(client.hget("emotion:sources", "cut"))
    assert cut_status["state"] == "failed" and "truncated" in cut_status["reason"]
