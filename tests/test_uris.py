"""Credential masking: every URI in a text, passwords with `@`, tokens, and log lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from pipeline.core.uris import mask_uri


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://:Secret@Wrong@host:6379/0", "redis://***@host:6379/0"),
        ("rtsp://admin:Pa55@word@cam.local:554/stream", "rtsp://admin:***@cam.local:554/stream"),
        ("rtsp://admin:s3cret@10.0.0.5/live?user=x@y", "rtsp://admin:***@10.0.0.5/live?user=x@y"),
        ("https://ghp_token@example.com/a.mp4", "https://***@example.com/a.mp4"),
        ("RTSP://Admin:P@ss@Cam", "RTSP://Admin:***@Cam"),
        ("cannot reach 'redis://u:p@w@h:1/0' nor rtsp://a:b@c/d.", "cannot reach 'redis://u:***@h:1/0' nor rtsp://a:***@c/d."),
        ("http://example.com/path@v2/file.mp4", "http://example.com/path@v2/file.mp4"),
        ("rtsp://cam.local/stream and /videos/a@b.mp4", "rtsp://cam.local/stream and /videos/a@b.mp4"),
        ("camera rtsp://admin:se'cr3t@cam:554/s is live", "camera rtsp://admin:***@cam:554/s is live"),
        ('{"uri": "rtsp://admin:a\\"b@cam:554"}', '{"uri": "rtsp://admin:***@cam:554"}'),
        ("<rtsp://admin:a<b>c@cam/s>", "<rtsp://admin:***@cam/s>"),
        ("rtsp://admin:two words@cam/s failed", "rtsp://admin:***@cam/s failed"),
        ("rtsp://a@b http://c:d@e/x", "rtsp://***@b http://c:***@e/x"),
    ],
)
def test_userinfo_is_everything_before_the_last_at_of_the_authority(text: str, masked: str) -> None:
    assert mask_uri(text) == masked


def test_log_lines_of_any_module_are_masked() -> None:
    """The command line's logging masks URIs whichever module logs them, and however (args or text)."""
    program = (
        "import logging; from pipeline.core.log_setup import configure_logging; configure_logging(False); "
        "logging.getLogger('any.module').warning('Redis at %s is down', 'redis://:Secret@Wrong@h:1/0'); "
        "logging.getLogger('other').error('opening rtsp://admin:Pa55@word@cam/s failed')"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert "redis://***@h:1/0" in result.stderr and "rtsp://admin:***@cam/s" in result.stderr
    assert "Secret" not in result.stderr and "Wrong" not in result.stderr and "word" not in result.stderr


def test_a_password_of_any_legal_characters_never_reaches_redis_logs_or_files(
    weights: Path, imgsz: int, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cameras whose passwords hold a quote, a double quote, <, > or a space (FFmpeg sends them as they are):
    their status, events, log lines and files name them with the password masked."""
    from pipeline.core.config import PipelineConfig, SourceSpec
    from pipeline.live.serve import serve
    from pipeline.sinks.redis_server import free_port

    secrets = {"quote": "se'cr3t", "double": 'se"cr3t', "angle": "se<cr>3t", "space": "se cr3t"}
    config = PipelineConfig()
    config.model.weights, config.model.imgsz = str(weights), imgsz
    config.redis.url, config.output.dir, config.redis.spill_dir = redis_url, str(tmp_path), str(tmp_path / "spill")
    config.live.connect_attempts, config.live.backoff_initial_s, config.live.backoff_max_s = 1, 0.1, 0.2
    config.sources = [SourceSpec(name, f"rtsp://admin:{secret}@127.0.0.1:{free_port()}/stream")
                      for name, secret in secrets.items()]
    with caplog.at_level("DEBUG"):
        report = serve(config, max_seconds=5)
    assert set(report.states.values()) == {"failed"}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    written = json.dumps(client.hgetall("emotion:sources"))
    written += json.dumps([client.xrange(f"emotion:events:{name}") for name in secrets])
    written += "".join(path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file())
    said = caplog.text + written
    assert "rtsp://admin:***@127.0.0.1:" in written
    for secret in secrets.values():
        assert "cr3t" not in said and secret not in said, f"{secret!r} shown"
