"""`emotion-stream demo`: the whole chain on a scripted video scored against its script, then a real face."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from exporters.input_size import check_imgsz_range
from pipeline.core.config import PipelineConfig
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import ConfigError, ModelError, SinkError
from pipeline.core.uris import mask_uri
from pipeline.files.process import RunReport, process_video
from pipeline.files.report import write_report
from pipeline.sinks.entries import parse_frame
from pipeline.sinks.redis_server import LocalRedisServer
from training.demo_model import DEMO_IMGSZ, SHIPPED_WEIGHTS, ModelMatch, compare_models, demo_model, train_demo_model
from training.sample_clips import CARPHONE, ClipUnavailable, fetch_clip
from training.script_agreement import Agreement, score_timeline
from training.synthetic_video import default_script, render_scripted_video

DEMO_SOURCE = "demo"
REAL_FACE_SOURCE = f"demo-{CARPHONE.name}"
"""Source ids of the demo's two videos (in a shared Redis, a re-run with other weights is refused, never replaced)."""
PASSING_ACCURACY = 0.9


@dataclass(frozen=True)
class DemoResult:
    """The demo's agreement with its script, how a retrained model compared, and the real-face report."""

    agreement: Agreement
    retrained: ModelMatch | None = None
    real_face_report: list[Path] | None = None
    """The real-face step's report files; None when the clip could not be fetched."""

    @property
    def passed(self) -> bool:
        """True when enough scripted face-frames carry the scripted emotion (and a retrained model matched)."""
        return self.agreement.accuracy >= PASSING_ACCURACY and (self.retrained is None or self.retrained.matches)


def run_demo(out: str | Path, redis_url: str | None = None, retrain: bool = False,
             weights: str | Path | None = None, imgsz: int | None = None) -> DemoResult:
    """Shipped (or retrained) tiny model, scripted video processed and scored, then a real face; prints each step.

    `weights` (at `imgsz`) is the user's own emotion model for the real-face step; without it the demo model is used.
    """
    if weights is not None and not Path(weights).exists():
        raise ModelError(f"cannot load weights {weights}: no such file or folder")
    if imgsz is not None:
        if weights is None:
            raise ConfigError("--imgsz is the size for --weights: give both, or neither for the demo model")
        check_imgsz_range(imgsz, "--imgsz")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"cannot write outputs to {out}: {exc.strerror}") from None
    model, retrained = _demo_weights(out, retrain)
    video = out / "demo.mp4"
    print(f"2/5 rendering a scripted video: {video}")
    truth = render_scripted_video(video, default_script())
    with _redis(redis_url) as url:
        print(f"3/5 processing it into Redis at {mask_uri(url)}")
        config = _config(url, out, model, DEMO_IMGSZ)
        report = _process(config, video, DEMO_SOURCE)
        print(report.summary.format())
        agreement = score_timeline(truth, _timeline_from_redis(url, RedisKeys(config.redis.prefix)))
        print(f"4/5 {agreement.format()}")
        print(f"    timeline files: {report.output_dir}")
        users = _config(url, out, Path(weights), imgsz or PipelineConfig().model.imgsz) if weights else None
        real_face = _real_face(users or config, users is not None)
    result = DemoResult(agreement, retrained, real_face)
    print("PASS" if result.passed else f"FAIL (needs {PASSING_ACCURACY:.0%} of scripted face-frames"
          + (" and a retrained model that matches the shipped one)" if retrain else ")"))
    return result


def _demo_weights(out: Path, retrain: bool) -> tuple[Path, ModelMatch | None]:
    if not retrain:
        weights = demo_model()
        print(f"1/5 tiny emotion detector (trained on synthetic FER-format scenes, shipped): {weights}")
        return weights, None
    print("1/5 retraining the tiny emotion detector from scratch on synthetic FER-format scenes")
    weights = train_demo_model(out / "retrained" / "emotion-demo.pt").weights
    match = compare_models(SHIPPED_WEIGHTS, weights)
    print(f"    {weights}: {match.format()}")
    return weights, match


def _real_face(config: PipelineConfig, users_model: bool) -> list[Path] | None:
    print(f"5/5 a real face: {CARPHONE.licence}")
    try:
        clip = fetch_clip()
    except ClipUnavailable as error:
        print(f"    skipped: {error}")
        return None
    if not users_model:
        print("    no --weights given: this is the demo model, trained on synthetic drawn faces only; its boxes and "
              "emotions on a real face are not meaningful. Give --weights a FER2013-trained model "
              "(emotion-stream train) to see real emotions.")
    report = _process(config, clip, REAL_FACE_SOURCE)
    print(report.summary.format())
    return _show_report(report)


def _process(config: PipelineConfig, video: Path, source_id: str) -> RunReport:
    """`process_video`, with a refusal by a shared Redis explained for the demo (it never replaces data)."""
    try:
        return process_video(config, video, source_id)
    except SinkError as error:
        reason, refused, _hint = str(error).partition("; pass --replace")
        if not refused:
            raise
        raise SinkError(f"{reason}; the demo never replaces data: give --redis another database, or delete the "
                        f"keys of the demo's sources ({DEMO_SOURCE}, {REAL_FACE_SOURCE})") from None


def _show_report(report: RunReport) -> list[Path]:
    written = write_report(report.output_dir)
    people = [path for path in written if path.name.startswith("person_")]
    for path in written:
        if path.name in ("overview.png", "report.md"):
            print(f"    report: {path}")
    print(f"    and one plot per tracked person ({len(people)}): {report.output_dir / 'person_<id>.png'}")
    return written


def _config(url: str, out: Path, weights: Path, imgsz: int) -> PipelineConfig:
    config = PipelineConfig()
    config.model.weights, config.model.imgsz = str(weights), imgsz
    config.redis.url, config.output.dir = url, str(out)
    return config


def _timeline_from_redis(url: str, keys: RedisKeys) -> list[list[tuple[tuple[float, ...], str]]]:
    client = redis.Redis.from_url(url)
    stream = keys.frames(DEMO_SOURCE)
    entries = [parse_frame(entry_id, fields, stream) for entry_id, fields in client.xrange(stream)]
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
