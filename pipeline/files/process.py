"""The `process` command: recorded files through the staged engine into Redis and file timelines.

Every file is a source: up to `batching.open_files` are decoded at once and share the
engine's batches, one progress bar counts them all, and each gets its own outputs, summary
and problems. A file that cannot be opened, or is damaged, fails alone; the job goes on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.core.config import PipelineConfig
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import ConfigError, SinkError, SourceError
from pipeline.core.shutdown import StopSignals
from pipeline.core.stage_times import StageTimes
from pipeline.core.uris import mask_uri
from pipeline.engine.detector import EmotionDetector
from pipeline.engine.loading import load_detectors
from pipeline.engine.stages import Engine
from pipeline.faces.analytics import SourceAnalytics
from pipeline.faces.summary import TimelineSummary
from pipeline.files.feed import FileFeed
from pipeline.files.segments import SegmentedVideoSource, decode_workers_for
from pipeline.files.sources import VideoFileSource
from pipeline.sinks.files import FileSink
from pipeline.sinks.redis_sink import RedisSink, connect
from pipeline.sinks.redis_writer import RedisWriter
from pipeline.sinks.source_output import SourceOutput

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What a finished run produced and what went wrong along the way."""

    source_id: str
    video: Path
    output_dir: Path
    summary: TimelineSummary
    model_id: str
    backend: str
    seconds: float = 0.0
    interrupted: bool = False
    source_problem: str | None = None
    redis_problem: str | None = None
    redis_written: int = 0
    redis_duplicates: int = 0
    stages: str = ""
    """Busy share of each engine stage over the run."""

    @property
    def fps(self) -> float:
        """Processed frames per second of wall time."""
        return self.summary.frames / self.seconds if self.seconds else 0.0


def process_video(
    config: PipelineConfig,
    video: str | Path,
    source_id: str | None = None,
    detector: EmotionDetector | None = None,
    show_progress: bool = True,
    max_frames: int | None = None,
) -> RunReport:
    """Process one video file end to end (see `process_files`); a file that cannot be opened raises."""
    source = _open_source(config, video, source_id, max_frames, files_at_once=1)
    return _run(config, [source], [detector] if detector else None, show_progress)[0]


def process_files(
    config: PipelineConfig,
    videos: list[str | Path],
    detectors: list[EmotionDetector] | None = None,
    show_progress: bool = True,
    max_frames: int | None = None,
) -> list[RunReport]:
    """Process many files through one engine; a report per file, in the order given.

    Files that cannot be opened get a report with `source_problem` and no outputs; the
    others are processed. Source ids are the file names and must be distinct.
    """
    sources: list[VideoFileSource | SegmentedVideoSource | RunReport] = []
    at_once = min(config.batching.open_files, len(videos))
    for video in videos:
        try:
            sources.append(_open_source(config, video, None, max_frames, at_once))
        except SourceError as exc:
            sources.append(RunReport(Path(video).stem, Path(video), Path(config.output.dir), TimelineSummary(), "",
                                     "", source_problem=str(exc)))
    opened = [source for source in sources if not isinstance(source, RunReport)]
    _check_distinct([source.source_id for source in opened], [source.path for source in opened])
    reports = iter(_run(config, opened, detectors, show_progress) if opened else [])
    return [source if isinstance(source, RunReport) else next(reports) for source in sources]


def _open_source(
    config: PipelineConfig, video: str | Path, source_id: str | None, max_frames: int | None, files_at_once: int
) -> VideoFileSource | SegmentedVideoSource:
    """A file source; decoded in segment processes when the cores allow (shared among the files
    decoded at the same time) or `source.decode_processes` asks for it."""
    workers = config.source.decode_processes or max(1, decode_workers_for() // files_at_once)
    if workers > 1:
        return SegmentedVideoSource(video, source_id, config.source.stride, max_frames, workers=workers)
    return VideoFileSource(video, source_id, stride=config.source.stride, max_frames=max_frames)


def _check_distinct(source_ids: list[str], paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for source_id, path in zip(source_ids, paths):
        if source_id in seen:
            raise ConfigError(f"{seen[source_id]} and {path} both get source id {source_id!r}: "
                              "process them in separate runs with --source-id, or rename one")
        seen[source_id] = path


def _run(
    config: PipelineConfig,
    sources: list[VideoFileSource | SegmentedVideoSource],
    detectors: list[EmotionDetector] | None,
    show_progress: bool,
) -> list[RunReport]:
    """One engine over `sources`; never raises after outputs have started to be written, except for
    an engine (model) error, which is raised once every output is closed."""
    detectors = detectors or load_detectors(config.model, config.batching.batch)
    detector = detectors[0]
    root = Path(config.output.dir)
    reports = [RunReport(source.source_id, source.path, root / source.source_id, TimelineSummary(),
                         detector.model_id, detector.description) for source in sources]
    spill = reports[0].output_dir / "redis-spill.jsonl" if len(sources) == 1 else root / "redis-spill.jsonl"
    writer = _open_writer(config, spill, reports)
    outputs = {source.source_id: _output(config, source, detector, writer, report)
               for source, report in zip(sources, reports)}
    feed = FileFeed(sources, config.batching.open_files, config.batching.queue_size,
                    config.batching.max_wait_ms / 1000)
    times = StageTimes()
    bar = tqdm(total=_expected(sources), unit="frame", desc=sources[0].source_id if len(sources) == 1 else
               f"{len(sources)} files", disable=not show_progress, dynamic_ncols=True)
    engine = Engine(detectors, feed, outputs, config.batching.batch, times,
                    on_written=lambda _source, frames: bar.update(frames))
    started = time.perf_counter()
    interrupted = False
    try:
        with StopSignals() as stop:
            engine.start()

            def stop_when_asked() -> None:
                nonlocal interrupted
                if stop.requested.is_set() and not interrupted:
                    interrupted = True
                    feed.stop()

            try:
                engine.wait(stop_when_asked)
            except KeyboardInterrupt:
                interrupted = True
                feed.stop()
                engine.wait()
    finally:
        feed.stop()  # only matters when the engine failed: its decoders stop waiting
        bar.close()
        seconds = time.perf_counter() - started
        for output in outputs.values():
            if engine.error is not None and not output.state.final:
                output.fail(f"inference stopped: {engine.error}")
        unwritten = writer.close(config.redis.timeout_s * 2) if writer is not None else 0
        for source, report in zip(sources, reports):
            output = outputs[source.source_id]
            output.close()
            report.summary, report.seconds, report.interrupted = output.summary, seconds, interrupted
            report.source_problem = report.source_problem or source.stopped_early or output.problem
            report.stages = times.overall()
            _redis_outcome(writer, output, report, unwritten)
            (report.output_dir / "summary.json").write_text(json.dumps(_summary_json(report), indent=2))
    return reports


def _expected(sources: list[VideoFileSource | SegmentedVideoSource]) -> int | None:
    counts = [source.expected_frames for source in sources]
    return None if None in counts else sum(counts)


def _output(
    config: PipelineConfig,
    source: VideoFileSource | SegmentedVideoSource,
    detector: EmotionDetector,
    writer: RedisWriter | None,
    report: RunReport,
) -> SourceOutput:
    analytics = SourceAnalytics(source.source_id, detector.names, config.tracking, config.events,
                                source.frame_interval_s())
    files = FileSink(report.output_dir, detector.names, detector.model_id)
    redis_sink = None
    if writer is not None:
        redis_sink = RedisSink(writer, source.source_id, detector.model_id, RedisKeys(config.redis.prefix),
                               config.redis.maxlen, str(source.path))
    return SourceOutput(source.source_id, detector.names, analytics, files, redis_sink)


def open_redis_writer(config: PipelineConfig, spill_path: Path) -> RedisWriter:
    """A background writer for `config.redis`, after checking that Redis answers (SinkError if not)."""
    connect(config.redis.url, config.redis.timeout_s).close()
    return RedisWriter(
        config.redis.url,
        timeout_s=config.redis.timeout_s,
        buffer_entries=config.redis.buffer_entries,
        spill_path=spill_path,
    )


def _open_writer(config: PipelineConfig, spill_path: Path, reports: list[RunReport]) -> RedisWriter | None:
    if not config.redis.url:
        return None
    try:
        return open_redis_writer(config, spill_path)
    except SinkError as exc:
        for report in reports:
            report.redis_problem = f"{exc}; file outputs are still written to {report.output_dir}"
        return None


def _redis_outcome(writer: RedisWriter | None, output: SourceOutput, report: RunReport, unwritten: int) -> None:
    if writer is None or output.redis is None:
        return
    frames_key = output.redis.keys.frames(output.source_id)
    report.redis_written, report.redis_duplicates = writer.written[frames_key], writer.duplicates[frames_key]
    if unwritten:
        report.redis_problem = (
            f"Redis at {mask_uri(writer.url)} did not come back: {unwritten} commands were not written; "
            f"the file outputs in {report.output_dir} hold every frame"
        )


def _summary_json(report: RunReport) -> dict:
    return {
        "source": report.source_id,
        "video": str(Path(report.video).resolve()),
        "model": report.model_id,
        "backend": report.backend,
        "seconds": round(report.seconds, 3),
        "fps": round(report.fps, 2),
        "interrupted": report.interrupted,
        "source_problem": report.source_problem,
        "redis_problem": report.redis_problem,
        "redis_written": report.redis_written,
        "redis_duplicates": report.redis_duplicates,
        "stages": report.stages,
        **report.summary.to_json(),
    }
