"""The `process` command: recorded files through the staged engine into Redis and file timelines.

Every file is a source: up to `batching.open_files` are decoded at once through one
engine (each batch holds one file's frames, see `feed`), one progress bar counts them all, and each gets its own outputs, summary
and problems. A file that cannot be opened, or is damaged, fails alone; the job goes on.
What Redis holds already is checked before anything is written (see `redis_run`).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.core.config import PipelineConfig
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import ConfigError
from pipeline.core.fleet_member import FleetMember
from pipeline.core.shutdown import StopSignals
from pipeline.core.source_ids import distinct_source_ids, output_folder
from pipeline.core.stage_times import StageTimes
from pipeline.core.states import SourceState
from pipeline.core.uris import video_path
from pipeline.engine.detector import EmotionDetector
from pipeline.engine.loading import load_detectors
from pipeline.engine.stages import Engine
from pipeline.faces.analytics import SourceAnalytics
from pipeline.faces.summary import TimelineSummary
from pipeline.files.feed import FileFeed, FileJob, FrameSource
from pipeline.files.redis_run import RedisRun, open_redis_run
from pipeline.files.segments import SegmentedVideoSource, decode_workers_for
from pipeline.files.sources import VideoFileSource
from pipeline.sinks.files import FileSink
from pipeline.sinks.redis_sink import RedisUnreachable
from pipeline.sinks.run_record import settings_hash
from pipeline.sinks.source_output import SourceOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressCounts:
    """Frames a job expects (of the files opened so far) and has written, at one moment."""

    expected: int = 0
    written: int = 0


class JobProgress:
    """Frames a job expects (of the files opened so far) and has written; another thread reads them."""

    def __init__(self) -> None:
        self.expected = 0
        self.written = 0
        self._lock = threading.Lock()

    def add(self, expected: int = 0, written: int = 0) -> None:
        """Count frames of a file that opened (`expected`) or that reached the outputs (`written`)."""
        with self._lock:
            self.expected += expected
            self.written += written

    def counts(self) -> ProgressCounts:
        """Both counts, read together."""
        with self._lock:
            return ProgressCounts(self.expected, self.written)


@dataclass(frozen=True)
class _Fleet:
    """What a fleet actor adds to a run: its place in the fleet, progress it reads, and its stop event."""

    member: FleetMember | None
    progress: JobProgress
    stop: threading.Event


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
    """Frames whose entries were in Redis already (an earlier run of the same file and settings)."""
    redis_resumed: str | None = None
    """The state of the earlier run of the same file and settings that this run resumed."""
    stages: str = ""
    """Busy share of each engine stage over the run."""
    opened: bool = False
    """False for a file that could not be opened (it has no outputs)."""

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
    replace: bool = False,
) -> RunReport:
    """Process one video file end to end (see `process_files`); a file that cannot be opened raises
    SourceError before anything is written."""
    source = _open_source(config, video, source_id, max_frames, files_at_once=1)
    job = FileJob(source.source_id, source.path, lambda: source, source.expected_frames)
    return _run(config, [job], [detector] if detector else None, show_progress, max_frames, replace)[0]


def process_files(
    config: PipelineConfig,
    videos: list[str | Path],
    detectors: list[EmotionDetector] | None = None,
    show_progress: bool = True,
    max_frames: int | None = None,
    replace: bool = False,
    source_ids: list[str] | None = None,
    member: FleetMember | None = None,
    progress: JobProgress | None = None,
    stop: threading.Event | None = None,
) -> list[RunReport]:
    """Process many files through one engine; a report per file, in the order given.

    Files are opened only when their turn comes (a folder of thousands holds a handful
    open); one that cannot be opened or is damaged gets its `source_problem` and the others
    are processed. Source ids come from the file names (see `distinct_source_ids`); a file
    given twice is refused. Redis data of another run under a file's source id refuses the
    job (SinkError) unless `replace` deletes it first.

    A fleet job (`member`) gives the `source_ids` it chose over all its files, reads `progress` from
    another thread, and sets `stop` where a signal would stop a run of its own.
    """
    paths = [video_path(video) for video in videos]
    _check_each_file_once(paths)
    at_once = min(config.batching.open_files, len(paths))
    jobs = [FileJob(source_id, path, functools.partial(_open_source, config, path, source_id, max_frames, at_once))
            for path, source_id in zip(paths, source_ids or distinct_source_ids(paths))]
    return _run(config, jobs, detectors, show_progress, max_frames, replace,
                _Fleet(member, progress or JobProgress(), stop or threading.Event()))


def _open_source(
    config: PipelineConfig, video: str | Path, source_id: str | None, max_frames: int | None, files_at_once: int
) -> VideoFileSource | SegmentedVideoSource:
    """A file source; decoded in segment processes when the cores allow (shared among the files
    decoded at the same time) or `source.decode_processes` asks for it."""
    workers = config.source.decode_processes or max(1, decode_workers_for() // files_at_once)
    if workers > 1:
        return SegmentedVideoSource(video, source_id, config.source.stride, max_frames, workers=workers)
    return VideoFileSource(video, source_id, stride=config.source.stride, max_frames=max_frames)


def _check_each_file_once(paths: list[Path]) -> None:
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise ConfigError(f"{path} is given twice: give each file once")
        seen.add(path.resolve())


def _run(
    config: PipelineConfig,
    jobs: list[FileJob],
    detectors: list[EmotionDetector] | None,
    show_progress: bool,
    max_frames: int | None,
    replace: bool,
    fleet: _Fleet | None = None,
) -> list[RunReport]:
    """One engine over the files of `jobs`; never raises after outputs have started to be written,
    except for an engine (model) error, which is raised once every output is closed."""
    detectors = detectors or load_detectors(config.model, config.batching.batch)
    detector = detectors[0]
    root = Path(config.output.dir)
    reports = [RunReport(job.source_id, job.path, output_folder(root, job.source_id), TimelineSummary(), detector.model_id,
                         detector.description) for job in jobs]
    fleet = fleet or _Fleet(None, JobProgress(), threading.Event())
    redis_run = _open_redis(config, jobs, detector, max_frames, replace, reports, fleet.member)
    outputs = {job.source_id: _output(config, job, detector, redis_run, report) for job, report in zip(jobs, reports)}
    single = len(jobs) == 1
    bar = tqdm(total=jobs[0].expected_frames if single else 0, unit="frame",
               desc=jobs[0].source_id if single else f"{len(jobs)} files", disable=not show_progress,
               dynamic_ncols=True)

    def count_in(source: FrameSource) -> None:
        fleet.progress.add(expected=source.expected_frames or 0)
        if not single and source.expected_frames:
            bar.total += source.expected_frames
            bar.refresh()

    feed = FileFeed(jobs, config.batching.open_files, config.batching.queue_size, on_open=count_in)
    times = StageTimes()

    def written(_source: str, frames: int) -> None:
        bar.update(frames)
        fleet.progress.add(written=frames)

    engine = Engine(detectors, feed, outputs, config.batching.batch, times, on_written=written)
    started = time.perf_counter()
    interrupted = False
    try:
        with StopSignals() as stop:
            engine.start()

            def stop_when_asked() -> None:
                nonlocal interrupted
                if (stop.requested.is_set() or fleet.stop.is_set()) and not interrupted:
                    interrupted = True
                    feed.stop()

            try:
                engine.wait(stop_when_asked)
            except KeyboardInterrupt:
                interrupted = True
                feed.stop()
                engine.wait()
    finally:
        with StopSignals() as closing:  # a Ctrl-C now only cuts the wait for Redis short
            feed.stop()  # only matters when the engine failed: its decoders stop waiting
            bar.close()
            seconds = time.perf_counter() - started
            for output in outputs.values():
                if engine.error is not None and not output.state.final:
                    output.fail(f"inference stopped: {engine.error}")
            redis_problems = redis_run.finish(outputs, config.redis.timeout_s * 2, closing.requested) if redis_run is not None else {}
            for job, report in zip(jobs, reports):
                output = outputs[job.source_id]
                report.summary, report.seconds = output.summary, seconds
                report.interrupted = interrupted and output.state not in (SourceState.ENDED, SourceState.FAILED)
                report.source_problem = output.problem
                report.stages = times.overall()
                report.opened = output.went_live
                if redis_run is not None:
                    _redis_outcome(redis_run, output, report, redis_problems.get(job.source_id))
                try:  # an unwritable or full output folder fails this file's outputs, not the job
                    output.close()
                    if report.opened:  # a file that never opened keeps whatever an earlier run left
                        (report.output_dir / "summary.json").write_text(json.dumps(_summary_json(report), indent=2))
                except OSError as exc:
                    report.source_problem = report.source_problem or f"cannot write outputs to {report.output_dir}: {exc}"
    return reports


def _output(
    config: PipelineConfig,
    job: FileJob,
    detector: EmotionDetector,
    redis_run: RedisRun | None,
    report: RunReport,
) -> SourceOutput:
    analytics = SourceAnalytics(job.source_id, detector.names, config.tracking, config.events, 1 / 30)
    files = FileSink(report.output_dir, detector.names, detector.model_id, RedisKeys.of(config.redis).schema)
    redis_sink = redis_run.sink(config, job, detector.model_id) if redis_run is not None else None
    return SourceOutput(job.source_id, detector.names, analytics, files, redis_sink)


def _open_redis(config: PipelineConfig, jobs: list[FileJob], detector: EmotionDetector, max_frames: int | None,
                replace: bool, reports: list[RunReport], member: FleetMember | None) -> RedisRun | None:
    """The job's Redis side; None without Redis, or when it does not answer (the files are still written)."""
    if not config.redis.url:
        return None
    settings = {"stride": config.source.stride, "imgsz": detector.settings.imgsz, "conf": detector.settings.conf,
                "iou": detector.settings.iou, "max_det": detector.settings.max_det,
                "agnostic_nms": detector.settings.agnostic_nms, "max_frames": max_frames,
                "runtime": detector.description, "batch": config.batching.batch,
                "analysis": settings_hash(config.tracking, config.events)}
    spill_dir = reports[0].output_dir if len(jobs) == 1 else Path(config.output.dir)
    try:
        return open_redis_run(config, jobs, detector.model_id, settings, spill_dir, replace, member)
    except RedisUnreachable as exc:
        for report in reports:
            report.redis_problem = f"{exc}; file outputs are still written to {report.output_dir}"
        return None


def _redis_outcome(redis_run: RedisRun, output: SourceOutput, report: RunReport, problem: str | None) -> None:
    frames_key = redis_run.keys.frames(output.source_id)
    sink = output.redis
    report.redis_written = redis_run.writer.written[frames_key]
    report.redis_duplicates = redis_run.writer.duplicates[frames_key] + (sink.skipped if sink else 0)
    resume = redis_run.resume.get(output.source_id)
    report.redis_resumed = resume.state if resume else None
    if problem:
        report.redis_problem = f"{problem} (the file outputs in {report.output_dir} hold every frame)"


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
        "redis_resumed": report.redis_resumed,
        "stages": report.stages,
        **report.summary.to_json(),
    }
