"""How many frame entries per second one Redis primary takes through the writer's pipelined transactions.

    python -m pipeline.sinks.write_budget                   # a private redis-server on a free port
    python -m pipeline.sinks.write_budget --redis URL       # a server of yours (keys under emotion-budget:, deleted)

Frames of several sources go through `RedisSink` and `RedisWriter` exactly as `process` and
`serve` send them (one XADD per frame with 2 faces of 7 scores each, plus the status HSET per
batch, MULTI/EXEC per writer batch), and the figure is the entries Redis took divided by the
time from the first frame handed over to the last one acknowledged. That rate is bound by
this one Python writer; the CPU time redis-server spent (INFO cpu, one server) gives the
rate one primary's core could take from many writers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.contract import RedisKeys
from pipeline.engine.batch import FrameInfo
from pipeline.sinks.payload import FramePayload
from pipeline.sinks.redis_server import LocalRedisServer
from pipeline.sinks.redis_sink import RedisSink, connect
from pipeline.sinks.redis_writer import RedisWriter

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
PREFIX = "emotion-budget"
FRAMES_PER_WRITE = 8
"""Frames a sink hands over at once (one engine batch)."""


@dataclass(frozen=True)
class Budget:
    """What one measurement found."""

    entries: int
    seconds: float
    entry_bytes: int
    redis_cpu_s: float | None
    """CPU seconds redis-server spent meanwhile (None for a cluster)."""

    @property
    def per_second(self) -> float:
        """Frame entries Redis took per second."""
        return self.entries / self.seconds

    def format(self) -> str:
        """Two lines for the user."""
        line = (f"{self.per_second:,.0f} frame entries/s through one writer ({self.entries} entries of about "
                f"{self.entry_bytes} bytes in {self.seconds:.2f}s; {_machine()})")
        if self.redis_cpu_s:
            line += (f"\nredis-server busy {self.redis_cpu_s:.2f} CPU-s of it: one primary core takes about "
                     f"{self.entries / self.redis_cpu_s:,.0f} frame entries/s")
        return line


def two_faces(frame: FrameInfo) -> FramePayload:
    """A frame with two tracked faces and all seven class scores, as the sink encodes it."""
    faces = [{"id": track, "box": [100.5 + track, 80.2, 220.7, 240.1], "emotion": "happy", "score": 0.9132,
              "scores": {name: round(0.0137 * (n + 1) + 0.001 * track, 4) for n, name in enumerate(EMOTIONS)}}
             for track in (1, 2)]
    return FramePayload(frame, faces, json.dumps(faces, separators=(",", ":")))


def measure(url: str, frames: int, sources: int, cluster: bool = False, contract: int = 1) -> Budget:
    """Send `frames` entries spread over `sources` through sinks and one writer; the rate Redis took them at."""
    keys = RedisKeys(PREFIX, contract)
    ids = [f"budget-{number}" for number in range(sources)]
    client = connect(url, cluster=cluster)
    with tempfile.TemporaryDirectory() as spill:
        writer = RedisWriter(url, buffer_entries=frames + sources * 2, spill_path=Path(spill) / "spill.jsonl",
                             cluster=cluster)
        sinks = [RedisSink(writer, source_id, "budget-model", keys, frames, "budget.mp4") for source_id in ids]
        per_source = frames // sources
        cpu_before = _redis_cpu_s(client, cluster)
        started = time.perf_counter()
        for first in range(0, per_source, FRAMES_PER_WRITE):
            for sink in sinks:
                wall = time.time()
                sink.write([two_faces(FrameInfo(sink.source_id, index, index / 30, wall, 1280, 720))
                            for index in range(first, min(first + FRAMES_PER_WRITE, per_source))])
        writer.flush(600)
        seconds = time.perf_counter() - started
        cpu_after = _redis_cpu_s(client, cluster)
        writer.close()
    written = sum(writer.written.values())
    sample = client.xrange(keys.frames(ids[0]), count=1)
    entry_bytes = sum(len(name) + len(value) for name, value in sample[0][1].items()) if sample else 0
    for source_id in ids:
        client.delete(keys.frames(source_id))
        client.hdel(keys.sources, source_id)
    client.close()
    redis_cpu_s = cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
    return Budget(written, seconds, entry_bytes, redis_cpu_s)


def _redis_cpu_s(client, cluster: bool) -> float | None:
    if cluster:
        return None
    cpu = client.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores"


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with LocalRedisServer() as server:
        yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.sinks.write_budget", description=__doc__.split("\n")[0])
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server on a free port)")
    parser.add_argument("--frames", type=int, default=60_000, help="frame entries to write (default 60000)")
    parser.add_argument("--sources", type=int, default=16, help="sources they are spread over (default 16)")
    parser.add_argument("--contract", type=int, choices=(1, 2), default=1, help="key layout (default 1)")
    parser.add_argument("--redis-cluster", action="store_true", help="--redis names a Redis Cluster node (contract 2)")
    args = parser.parse_args(argv)
    if args.frames < args.sources or args.sources < 1:
        parser.error("--frames must be at least --sources, and --sources at least 1")
    if args.redis_cluster and (args.contract != 2 or not args.redis):
        parser.error("--redis-cluster needs --contract 2 and --redis URL")
    with _server(args.redis) as url:
        print(measure(url, args.frames, args.sources, args.redis_cluster, args.contract).format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
