"""Live sources come back after any number of outages: real GStreamer RTSP servers killed, frozen and restarted."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from pipeline.core.config import LiveConfig, PipelineConfig, SourceSpec
from pipeline.core.states import SourceState
from pipeline.core.types import Frame, StatusChange
from pipeline.live.feed import LiveFeed
from pipeline.live.serve import serve
from pipeline.live.supervisor import DecoderSupervisor
from pipeline.live.watchdog import Watchdog
from tests.rtsp import RtspServer

RESTARTS = int(os.environ.get("EMOTION_STREAM_RTSP_RESTARTS", "5"))
"""Server restarts in a row (`make soak` runs 30)."""


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class _Consumer:
    """Takes batches from the live feed and hands their slots back, as the engine does; records statuses."""

    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed
        self.frames = 0
        self.statuses: list[StatusChange] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (entries := self.feed.next_batch(4)) is not None:
            frames = [entry for entry in entries if isinstance(entry, Frame)]
            self.statuses += [entry for entry in entries if isinstance(entry, StatusChange)]
            self.frames += len(frames)
            self.feed.release(frames)

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_a_dropped_stream_reads_reconnecting_at_once_not_as_a_stall(camera_video: Path) -> None:
    """While the decoder backs off before reconnecting, the source is `reconnecting` with the
    decoder's reason; the watchdog does not take the wait for a stalled stream."""
    live = LiveConfig(stall_timeout_s=1.0, backoff_initial_s=30.0, backoff_max_s=30.0)
    with RtspServer({"cam": camera_video}) as server:
        supervisor = DecoderSupervisor([SourceSpec("cam", server.url("cam"))], live, batch_size=4)
        watchdog = Watchdog(supervisor, interval_s=0.1)
        consumer = _Consumer(LiveFeed(supervisor, max_wait_s=0.05))
        handle = supervisor.handles["cam"]
        supervisor.start()
        watchdog.start()
        try:
            assert _wait_for(lambda: consumer.frames >= 10, 30), "the camera never delivered frames"
            server.kill()
            assert _wait_for(lambda: handle.state is not SourceState.LIVE, 10), "still live after the server died"
        finally:
            watchdog.stop()
            supervisor.stop()
            consumer.join()
            supervisor.close()
    reconnecting = [change for change in consumer.statuses if change.state is SourceState.RECONNECTING]
    assert reconnecting and reconnecting[0].reason == "stream ended", reconnecting[0].reason


def _freeze(server: RtspServer, seconds: float) -> None:
    """Stop the server process without closing its connections, as a network cut does."""
    os.kill(server.pid, signal.SIGSTOP)
    time.sleep(seconds)
    os.kill(server.pid, signal.SIGCONT)


def _frames_since(client: redis.Redis, wall_time: float) -> int:
    """Frames in Redis that the camera's decoder received after `wall_time` (a live frame's id is its receipt time)."""
    return len(client.xrange("emotion:frames:cam", min=f"{int(wall_time * 1000)}-0"))


def _restarts(redis_url: str, server: RtspServer, restarts: int, frames_each: int) -> list[int]:
    """Cut, kill and restart the server `restarts` times, each time once the camera delivered
    `frames_each` frames received after the last restart; returns those counts (stops early when
    a restart brought no frames back within 30 s). Then stops `serve` with SIGTERM."""
    client = redis.Redis.from_url(redis_url)
    delivered: list[int] = []
    try:
        if not _wait_for(lambda: client.xlen("emotion:frames:cam") >= frames_each, 60):
            return delivered
        for _ in range(restarts):
            _freeze(server, 1.0)  # the decoder's read times out: an error, not the end of the stream
            server.kill()
            time.sleep(0.3)
            server.start()
            restarted_at = time.time()
            _wait_for(lambda: _frames_since(client, restarted_at) >= frames_each, 30)
            delivered.append(_frames_since(client, restarted_at))
            if delivered[-1] < frames_each:
                break
        return delivered
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # serve stops on it, between batches


def _outage_run(weights: Path, imgsz: int, camera_video: Path, redis_url: str, tmp_path: Path,
                restarts: int) -> tuple[list[int], dict, list[dict]]:
    with RtspServer({"cam": camera_video}) as server:
        config = PipelineConfig()
        config.model.weights, config.model.imgsz = str(weights), imgsz
        config.redis.url, config.redis.spill_dir = redis_url, str(tmp_path / "spill")
        config.output.dir, config.output.files = str(tmp_path), False
        config.batching.batch = 4
        config.live = LiveConfig(open_timeout_s=3.0, read_timeout_s=0.5, stall_timeout_s=4.0,
                                 backoff_initial_s=0.2, backoff_max_s=30.0)
        config.sources = [SourceSpec("cam", server.url("cam"))]
        result: list[list[int]] = []
        chaos = threading.Thread(target=lambda: result.append(_restarts(redis_url, server, restarts, 8)))
        chaos.start()
        report = serve(config, max_seconds=120 + 10 * restarts)
        chaos.join()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    statuses = [fields for _id, fields in client.xrange("emotion:events:cam") if fields["type"] == "source_status"]
    stored = [int(fields["frame"]) for _id, fields in client.xrange("emotion:frames:cam")]
    assert stored == sorted(set(stored)), "frame numbers go on across restarts, never repeat"
    return result[0], json.loads(client.hget("emotion:sources", "cam")) | {"reconnects": report.reconnects["cam"]}, \
        statuses


def _assert_back_after_every_outage(delivered: list[int], restarts: int, status: dict, statuses: list[dict]) -> None:
    assert len(delivered) == restarts and min(delivered) >= 8, f"frames after each restart: {delivered}"
    assert status["reconnects"] >= restarts
    stalls = [fields["reason"] for fields in statuses if fields["reason"].startswith("no frame for")]
    assert not stalls, f"the decoder saw every outage itself, yet the watchdog restarted it: {stalls}"
    assert [fields["state"] for fields in statuses][-1] == "ended"


def test_camera_comes_back_after_every_server_restart(
    weights: Path, imgsz: int, camera_video: Path, redis_url: str, tmp_path: Path
) -> None:
    """Each outage starts the decoder's backoff afresh: many in a row cost no more than the first."""
    delivered, status, statuses = _outage_run(weights, imgsz, camera_video, redis_url, tmp_path, restarts=RESTARTS)
    _assert_back_after_every_outage(delivered, RESTARTS, status, statuses)
