"""The staged engine: batches flow through threads joined by bounded queues.

    feed ─> batcher ─> [preprocess ─> inference] x devices ─> post ─> sinks

- intake: takes entries (frames and status changes, in order) from the feed and numbers
  the batches; batch n goes to the lane of device n mod devices. It takes a batch only
  when that lane has room (`LANE_BATCHES` not yet through inference), so frames that
  inference cannot take yet wait in the feed, where a live source drops its oldest, not
  in queues between stages where they would only grow older.
- preprocess (one per device): letterbox and upload; the frames' shared-memory slots are
  released as soon as their pixels are copied.
- inference (one per device): forward pass, NMS, one device-to-host copy -> `Detections`.
- post: reads the lanes in batch order, so every source's frames stay in order; per source,
  tracking and events, and a status change right after the frames that preceded it.
- sinks: each source's files and Redis commands (a `SourceOutput` per source).

While inference runs batch n, batch n+1 is preprocessed and batch n-1 post-processed and
written. A failing tracker or sink fails its source with the reason and the others go on;
an error of the engine itself (the model, a bug) stops every stage and is raised by `wait`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.core.errors import EmotionStreamError, ModelError
from pipeline.core.stage_times import Stage, StageTimes
from pipeline.core.types import Entry, Frame, StatusChange
from pipeline.engine.batch import Detections, FrameInfo
from pipeline.engine.detector import EmotionDetector
from pipeline.engine.preprocess import ModelInput

log = logging.getLogger(__name__)

_POLL_S = 0.1
LANE_BATCHES = 2
"""Batches a lane holds before inference finishes one: one in the forward pass, one prepared."""


class FrameFeed(Protocol):
    """Where the engine takes its input: files or live sources."""

    def next_batch(self, max_frames: int) -> list[Entry] | None:
        """Up to `max_frames` frames, with the status changes between them, in order per source;
        [] when nothing came for a moment; None once every source is finished."""

    def release(self, frames: list[Frame]) -> None:
        """The frames' pixels are no longer needed (their memory may be reused)."""

    def fail(self, source_id: str, reason: str) -> None:
        """Stop reading a source that failed downstream."""


class SourceOutput(Protocol):
    """Everything downstream of detection for one source (see `sinks.source_output`)."""

    failure: str | None
    """Why the source failed downstream, once it did."""

    def track(self, detections: Detections) -> list:
        """Tracking and events of the source's next frames, in order (post thread); returns the events."""

    def status_events(self, change: StatusChange) -> list:
        """Events a status change causes, e.g. face exits at the end (post thread)."""

    def write(self, detections: Detections | None, events: list) -> int:
        """Write frames and events (sink thread); returns the frames written."""

    def status(self, change: StatusChange) -> None:
        """Record a status change (sink thread)."""

    def fail(self, reason: str) -> None:
        """Record that the source failed downstream (its sinks say so where they still can)."""


@dataclass
class _Batch:
    number: int
    entries: list[Entry]
    frames: list[Frame] = field(default_factory=list)
    model_inputs: list[ModelInput] | None = None
    detections: Detections | None = None


@dataclass(frozen=True)
class SourceWork:
    """What the sinks do for one source: write frames and events, then record a status change."""

    source_id: str
    detections: Detections | None = None
    events: list = field(default_factory=list)
    status: StatusChange | None = None
    failure: str | None = None
    """Set when post-processing failed the source: the sinks record it after what came before."""


class _Stopped(Exception):
    """Raised inside a stage when the engine is aborting."""


_END = object()


class Engine:
    """Runs the stages on threads; `start`, then `wait` until the feed is exhausted and all is written."""

    def __init__(
        self,
        detectors: list[EmotionDetector],
        feed: FrameFeed,
        outputs: dict[str, SourceOutput],
        batch_size: int,
        times: StageTimes | None = None,
        on_written: Callable[[str, int], None] | None = None,
        queue_depth: int = 2,
    ) -> None:
        self.detectors = detectors
        self.feed = feed
        self.outputs = outputs
        self.batch_size = batch_size
        self.times = times or StageTimes()
        self.on_written = on_written
        self.names = detectors[0].names
        self.error: BaseException | None = None
        self._abort = threading.Event()
        self._failed: set[str] = set()
        lanes = range(len(detectors))
        self._to_preprocess = [self._queue(f"preprocess{lane}", queue_depth) for lane in lanes]
        self._to_inference = [self._queue(f"inference{lane}", queue_depth) for lane in lanes]
        self._to_post = [self._queue(f"post{lane}", queue_depth) for lane in lanes]
        self._to_sinks = self._queue("sinks", queue_depth * 2)
        self._room = [threading.Semaphore(LANE_BATCHES) for _ in lanes]
        self._threads = [threading.Thread(target=self._guard, args=(self._batcher,), name="engine-intake")]
        for lane in lanes:
            self._threads += [
                threading.Thread(target=self._guard, args=(self._preprocess, lane), name=f"engine-preprocess{lane}"),
                threading.Thread(target=self._guard, args=(self._inference, lane), name=f"engine-inference{lane}"),
            ]
        self._threads += [threading.Thread(target=self._guard, args=(self._post,), name="engine-post"),
                          threading.Thread(target=self._guard, args=(self._write,), name="engine-sinks")]

    def start(self) -> None:
        """Start every stage's thread."""
        for thread in self._threads:
            thread.start()

    def wait(self, tick: Callable[[], None] | None = None, interval_s: float = 0.5) -> None:
        """Block until every stage finished, calling `tick` every `interval_s`; raises an engine error."""
        self.join(tick, interval_s)
        if isinstance(self.error, EmotionStreamError):
            raise self.error
        if self.error is not None:
            text = str(self.error).strip().splitlines()
            raise ModelError(f"inference failed: {type(self.error).__name__}: {text[0] if text else ''}") from self.error

    def join(self, tick: Callable[[], None] | None = None, interval_s: float = 0.5) -> None:
        """Block until every stage's thread has finished (after `abort`, promptly)."""
        for thread in self._threads:
            while thread.is_alive():
                thread.join(interval_s)
                if tick is not None:
                    tick()

    def abort(self) -> None:
        """Stop every stage at once (what is in flight is lost); `wait` still joins them."""
        self._abort.set()

    # -- stages ---------------------------------------------------------------------------

    def _batcher(self) -> None:
        number = 0
        while True:
            lane = number % len(self.detectors)
            self._acquire(self._room[lane])
            with self.times.busy(Stage.INTAKE):
                entries = self.feed.next_batch(self.batch_size)
            if not entries:
                self._room[lane].release()
                if entries is None:
                    break
                continue
            self._put(self._to_preprocess[lane], _Batch(number, entries))
            number += 1
        for lane_queue in self._to_preprocess:
            self._put(lane_queue, _END)

    def _preprocess(self, lane: int) -> None:
        detector = self.detectors[lane]
        while (batch := self._get(self._to_preprocess[lane])) is not _END:
            batch.frames = [entry for entry in batch.entries if isinstance(entry, Frame)]
            if batch.frames:
                with self.times.busy(Stage.PREPROCESS):
                    try:
                        batch.model_inputs = detector.prepare([frame.image for frame in batch.frames])
                    finally:
                        self.feed.release(batch.frames)
            self._put(self._to_inference[lane], batch)
        self._put(self._to_inference[lane], _END)

    def _inference(self, lane: int) -> None:
        detector = self.detectors[lane]
        while (batch := self._get(self._to_inference[lane])) is not _END:
            infos = [_info(frame) for frame in batch.frames]
            if batch.model_inputs is not None:
                with self.times.busy(Stage.INFERENCE):
                    batch.detections = detector.infer(batch.model_inputs, infos)
                batch.model_inputs = None
            else:
                batch.detections = Detections.empty(infos, len(self.names))
            self._room[lane].release()
            self._put(self._to_post[lane], batch)
        self._put(self._to_post[lane], _END)

    def _post(self) -> None:
        number = 0
        while (batch := self._get(self._to_post[number % len(self.detectors)])) is not _END:
            with self.times.busy(Stage.POST):
                work = self._post_batch(batch)
            for item in work:
                self._put(self._to_sinks, item)
            number += 1
        self._put(self._to_sinks, _END)

    def _write(self) -> None:
        while (work := self._get(self._to_sinks)) is not _END:
            with self.times.busy(Stage.SINKS):
                self._write_one(work)

    # -- per source ---------------------------------------------------------------------

    def _post_batch(self, batch: _Batch) -> list[SourceWork]:
        """Per source, in entry order: frames (tracked, with their events), then any status change."""
        work: list[SourceWork] = []
        waiting: dict[str, list[int]] = {}
        position = 0
        for entry in batch.entries:
            if isinstance(entry, Frame):
                waiting.setdefault(entry.source_id, []).append(position)
                position += 1
                continue
            work += self._track(entry.source_id, batch.detections, waiting.pop(entry.source_id, []))
            work += self._status(entry)
        for source_id, positions in waiting.items():
            work += self._track(source_id, batch.detections, positions)
        return work

    def _track(self, source_id: str, detections: Detections, positions: list[int]) -> list[SourceWork]:
        if not positions or source_id in self._failed:
            return []
        mine = detections.select(positions)
        try:
            events = self.outputs[source_id].track(mine)
        except Exception as exc:  # a tracker bug or bad state fails this source, not the run
            return self._fail(source_id, f"tracking failed: {exc}")
        return [SourceWork(source_id, mine, events)]

    def _status(self, change: StatusChange) -> list[SourceWork]:
        source_id = change.source_id
        if source_id in self._failed:
            return []
        try:
            events = self.outputs[source_id].status_events(change)
        except Exception as exc:  # as in _track
            return self._fail(source_id, f"tracking failed: {exc}")
        return [SourceWork(source_id, None, events, change)]

    def _write_one(self, work: SourceWork) -> None:
        output = self.outputs[work.source_id]
        if output.failure:
            return
        if work.failure is not None:
            output.fail(work.failure)
            return
        try:
            frames = output.write(work.detections, work.events)
            if work.status is not None:
                output.status(work.status)
        except Exception as exc:  # a full disk or a bad sink fails this source, not the run
            reason = f"writing results failed: {exc}"
            self._fail(work.source_id, reason)
            output.fail(reason)
            return
        if frames and self.on_written is not None:
            self.on_written(work.source_id, frames)

    def _fail(self, source_id: str, reason: str) -> list[SourceWork]:
        """Fail one source: no more of its frames go downstream and its decoding stops; the others go on.

        Returns the work that records the failure in the source's sinks after what came before."""
        log.error("%s: %s; this source is failed, the others go on", source_id, reason)
        self._failed.add(source_id)
        self.feed.fail(source_id, reason)
        return [SourceWork(source_id, failure=reason)]

    # -- plumbing -------------------------------------------------------------------------

    def _queue(self, name: str, depth: int) -> queue.Queue:
        created: queue.Queue = queue.Queue(maxsize=depth)
        self.times.queues[name] = created
        return created

    def _guard(self, stage: Callable[..., None], *args: object) -> None:
        try:
            stage(*args)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to `wait`, which raises it on the caller's thread
            if self.error is None:
                self.error = exc
            log.debug("engine stage %s failed", stage.__name__, exc_info=True)
            self._abort.set()

    def _put(self, target: queue.Queue, item: object) -> None:
        while not self._abort.is_set():
            try:
                target.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _acquire(self, room: threading.Semaphore) -> None:
        while not self._abort.is_set():
            if room.acquire(timeout=_POLL_S):
                return
        raise _Stopped

    def _get(self, source: queue.Queue) -> object:
        while not self._abort.is_set():
            try:
                return source.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        raise _Stopped


def _info(frame: Frame) -> FrameInfo:
    width, height = frame.size
    return FrameInfo(frame.source_id, frame.index, frame.pts, frame.wall_time, width, height)

