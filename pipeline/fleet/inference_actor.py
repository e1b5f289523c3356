"""The inference actor: one per GPU (or per N cores), the model loaded once, files and cameras run through it.

Ray runs its methods on a thread pool (`max_concurrency`), so the controller can ask for progress and
metrics, or stop it, while `process` or `serve` calls run.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.config import PipelineConfig, SourceSpec
from pipeline.core.errors import EmotionStreamError
from pipeline.core.fleet_member import FleetMember
from pipeline.core.log_setup import configure_logging
from pipeline.core.metrics import PipelineMetrics
from pipeline.engine.detector import EmotionDetector
from pipeline.engine.loading import load_detectors
from pipeline.files.process import JobProgress, ProgressCounts, RunReport, process_files
from pipeline.live.serve import ServeReport, serve


@dataclass(frozen=True)
class CameraStats:
    """One camera's counters as its actor reports them to the controller."""

    state: str
    frames: int
    dropped: int


class InferenceActor:
    """Holds one engine's model; runs `process` units and `serve` camera groups of one fleet job."""

    def __init__(self, config: PipelineConfig, job: str, node: str) -> None:
        configure_logging()  # this process is Ray's: the same lines, credentials masked
        self.config = config
        self.member = FleetMember(job, node)
        self.detectors: list[EmotionDetector] = []
        self.load_error: EmotionStreamError | None = None
        try:  # raised by `ready`: Ray keeps a method's exception for the caller, not a constructor's
            self.detectors = load_detectors(config.model, config.batching.batch)
        except EmotionStreamError as exc:
            self.load_error = exc
        self.progress = JobProgress()
        self.stop_event = threading.Event()
        self._metrics: dict[str, PipelineMetrics] = {}
        self._model_in_use = threading.Lock()  # one engine at a time uses the loaded model

    def ready(self) -> str:
        """What runs here, once the model is loaded; the model's error when it could not be."""
        if self.load_error is not None:
            raise self.load_error
        detector = self.detectors[0]
        return f"{detector.model_id} on {detector.description}"

    def process(self, videos: list[Path], source_ids: list[str], replace: bool) -> list[RunReport]:
        """Process files (units of the job) through one engine; a report per file."""
        with self._model_in_use:
            return process_files(self.config, videos, self.detectors, show_progress=False, replace=replace,
                                 source_ids=source_ids, member=self.member, progress=self.progress,
                                 stop=self.stop_event)

    def serve(self, cameras: list[SourceSpec], realtime_files: bool = False) -> ServeReport:
        """Serve `cameras` until they end or `stop` is called. Each call is its own engine, with its own copy of
        the model (cameras moved here from a lost actor join while the first group runs)."""
        config = dataclasses.replace(self.config, sources=cameras)
        shared = self._model_in_use.acquire(blocking=False)
        group = ",".join(spec.id for spec in cameras)
        try:
            report = serve(config, self.detectors if shared else None, realtime_files, stop=self.stop_event,
                           member=self.member,
                           on_start=lambda metrics: self._metrics.__setitem__(group, metrics))
        finally:
            self._metrics.pop(group, None)
            if shared:
                self._model_in_use.release()
        report.metrics = None  # it holds threads and a socket; the controller gathers `camera_stats` instead
        return report

    def progress_counts(self) -> ProgressCounts:
        """Frames expected of the files opened so far, and frames written, over this actor's life."""
        return self.progress.counts()

    def camera_stats(self) -> dict[str, CameraStats]:
        """Counters of every camera served here now."""
        return {source_id: CameraStats(metrics.state, metrics.frames, metrics.dropped)
                for group in list(self._metrics.values()) for source_id, metrics in group.sources.items()}

    def stop(self) -> None:
        """Finish what is in flight and end every run here (files are reported interrupted)."""
        self.stop_event.set()
