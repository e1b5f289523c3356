"""Helpers for tests that start a Redis reader in another process."""

from __future__ import annotations

import time

import redis


def wait_for_blocked_reader(url: str) -> None:
    """Wait until a client is blocked in XREAD (the subscriber is listening)."""
    client = redis.Redis.from_url(url)
    for _ in range(300):
        if any(c.get("cmd") == "xread" for c in client.client_list()):
            return
        time.sleep(0.1)
    raise AssertionError("the subscriber never started reading")
