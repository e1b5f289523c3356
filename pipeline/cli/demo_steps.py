"""`emotion-stream demo`: the whole chain on synthetic data, scored against its script."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import redis

from pipeline.core.config import PipelineConfig
from pipeline.core.contract import RedisKeys
from pipeline.core.uris import mask_uri
from pipeline.files.process import process_video
from pipeline.sinks.entries import parse_frame
from pipeline.sinks.redis_server import LocalRedisServer
from training.demo_model import DEMO_IMGSZ, demo_model
from training.script_agreement import Agreement, score_timeline
from training.synthetic_video import default_script, render_scripted_video

DEMO_SOURCE = "demo"
PASSING_ACCURACY = 0.9


class DemoResult(Agreement):
    """The demo's agreement with its script, and whether it passes."""

    @property
    def passed(self) -> bool:
        """True when enough scripted face-frames carry the scripted emotion."""
        return self.accuracy >= PASSING_ACCURACY


def run_demo(out: str | Path, redis_url: str | None = None, epochs: int | None = None) -> DemoResult:
    """Train (or reuse) the tiny model, render the scripted video, process it, score it; print each step."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print("1/4 tiny emotion detector (trained on synthetic FER-format scenes, cached after the first run)")
    weights = demo_model(epochs)
    print(f"    weights: {weights}")
    video = out / "demo.mp4"
    print(f"2/4 rendering a scripted video: {video}")
    truth = render_scripted_video(video, default_script())
    with _redis(redis_url) as url:
        print(f"3/4 processing into Redis at {mask_uri(url)}")
        config = PipelineConfig()
        config.model.weights, config.model.imgsz = str(weights), DEMO_IMGSZ
        config.redis.url, config.output.dir = url, str(out)
        report = process_video(config, video, DEMO_SOURCE)
        print(report.summary.format())
        timeline = _timeline_from_redis(url, RedisKeys(config.redis.prefix))
    agreement = score_timeline(truth, timeline)
    result = DemoResult(**vars(agreement))
    print(f"4/4 {result.format()}")
    print(f"    timeline files: {report.output_dir}")
    print("    " + ("PASS" if result.passed else f"FAIL (needs {PASSING_ACCURACY:.0%})"))
    return result


def _timeline_from_redis(url: str, keys: RedisKeys) -> list[list[tuple[tuple[float, ...], str]]]:
    client = redis.Redis.from_url(url)
    entries = [parse_frame(entry_id, fields) for entry_id, fields in client.xrange(keys.frames(DEMO_SOURCE))]
    client.close()
    by_frame = {entry.frame: [(tuple(f["box"]), f["emotion"]) for f in entry.faces] for entry in entries}
    return [by_frame.get(i, []) for i in range(max(by_frame, default=-1) + 1)]


@contextlib.contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with LocalRedisServer() as server:
        print(f"    no Redis configured: started a private redis-server at {server.url}")
        yield server.url
