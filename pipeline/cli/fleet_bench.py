"""`bench --cluster`: what the Ray path costs against plain `process` and `serve` on the same machine, in one run."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.cli.benchmarks import Throughput
from pipeline.core.config import PipelineConfig, SourceSpec
from pipeline.files.process import process_files
from pipeline.fleet.archive import process_on_cluster
from pipeline.fleet.camera_fleet import serve_on_cluster
from pipeline.fleet.ray_cluster import connect
from pipeline.live.serve import serve
from pipeline.sinks.redis_server import LocalRedisServer


def run_fleet_archive_bench(config: PipelineConfig, video: str | Path, files: int, address: str) -> float:
    """`files` copies of `video` through plain `process` and through `process --cluster ADDRESS` (each into its
    own private Redis); print both and the Ray path's overhead. Wall time counts model loading in both, and
    joining the cluster and starting the actors in the Ray path."""
    with tempfile.TemporaryDirectory() as folder:
        copies = []
        for number in range(files):
            copies.append(Path(folder) / f"copy{number + 1}{Path(video).suffix}")
            try:  # distinct files to the job (a symbolic link would be the same file given twice)
                os.link(video, copies[-1])
            except OSError:
                shutil.copyfile(video, copies[-1])
        print(f"fleet bench: {files} copies of {video}, {config.model.weights} at imgsz {config.model.imgsz}, "
              f"batch {config.batching.batch}, cluster {address}")
        plain = _timed_archive(config, Path(folder) / "plain",
                               lambda run: sum(r.summary.frames for r in process_files(run, copies, show_progress=False)))
        joined = time.perf_counter()
        connect(address)
        print(f"  joining the cluster at {address} took {time.perf_counter() - joined:.1f}s (not counted below; "
              "the actors' start and model loading are)")
        ready_at: list[float] = []
        fleet = _timed_archive(config, Path(folder) / "fleet", lambda run: sum(
            r.summary.frames for r in process_on_cluster(run, copies, address, show_progress=False,
                                                         on_ready=lambda: ready_at.append(time.perf_counter()))))
    overhead = plain.fps / fleet.fps - 1 if fleet.fps else float("inf")
    steady = Throughput("", fleet.frames, fleet.ended - ready_at[0])
    print(f"  process            {plain.frames:7d} frames {plain.seconds:7.1f}s {plain.fps:8.1f} frames/s   "
          "(model loading included)")
    print(f"  process --cluster  {fleet.frames:7d} frames {fleet.seconds:7.1f}s {fleet.fps:8.1f} frames/s   "
          f"overhead {overhead:+.1%} (actor start and model loading included)")
    print(f"    after the actors were ready  {steady.seconds:7.1f}s {steady.fps:8.1f} frames/s   "
          f"{plain.fps / steady.fps - 1 if steady.fps else float('inf'):+.1%} against process")
    return overhead


def run_fleet_live_bench(config: PipelineConfig, video: str | Path, streams: int, seconds: float, address: str) -> float:
    """`streams` paced copies of `video` through plain `serve` and through `serve --cluster ADDRESS` for `seconds`
    each; print the frames/s each delivered and the Ray path's shortfall."""
    config = copy.deepcopy(config)
    config.sources = [SourceSpec(f"stream{i + 1}", str(Path(video).resolve()), loop=True) for i in range(streams)]
    config.output.files = False
    config.metrics.log_interval_s = max(seconds, 1.0) * 2
    print(f"fleet live bench: {streams} paced stream(s) of {video}, {seconds:.0f}s each way, cluster {address}")
    with LocalRedisServer() as private:
        config.redis.url = private.url
        config.redis.prefix = "plain"
        plain = serve(config, realtime_files=True, max_seconds=seconds)
        config.redis.prefix = "fleet"
        fleet = serve_on_cluster(config, address, max_seconds=seconds, realtime_files=True).serve
    plain_fps, fleet_fps = sum(plain.frames.values()) / plain.seconds, sum(fleet.frames.values()) / fleet.seconds
    shortfall = 1 - fleet_fps / plain_fps if plain_fps else 0.0
    print(f"  serve              {plain_fps:8.1f} frames/s over {plain.seconds:.1f}s")
    print(f"  serve --cluster    {fleet_fps:8.1f} frames/s over {fleet.seconds:.1f}s   shortfall {shortfall:+.1%} "
          "(model loading not counted in either)")
    return shortfall


@dataclass(frozen=True)
class _Timed(Throughput):
    ended: float = 0.0
    """`time.perf_counter()` at the end."""


def _timed_archive(config: PipelineConfig, out: Path, run: Callable[[PipelineConfig], int]) -> _Timed:
    """Frames `run` processed and its wall time, with outputs in `out` and a private Redis."""
    config = copy.deepcopy(config)
    config.output.dir = str(out)
    with LocalRedisServer() as private:
        config.redis.url = private.url
        started = time.perf_counter()
        frames = run(config)
        ended = time.perf_counter()
        return _Timed("", frames, ended - started, ended=ended)
