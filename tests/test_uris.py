"""Credential masking: every URI in a text, passwords with `@`, tokens, and log lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
