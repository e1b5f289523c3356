"""The engine's feed for recorded files: several files decoded at once, each batch of one file.

Files are opened when their turn comes. Up to `open_files` are decoded at the same time,
each on its own thread (PyAV releases
the GIL while decoding; a long file may also decode in segment processes, see `segments`).
Their frames meet in one bounded queue, so decoders wait when inference is behind: files
never drop frames. A batch holds one file's frames, cut every `max_frames` of them from its
first (the last batch of a file may be short): so what a frame shares its forward pass with
depends only on its file and the batch size, never on the other files of the job or on
timing, and a file's faces are the same alone, in any job, on any node and after a resume
(PyTorch's CPU kernels, for one, round a frame's scores differently in batches of other
sizes). A file's status travels in the same queue, in order with its frames:
`live` before its first frame, `ended` (with the damaged packets that were skipped, if any)
or `failed` (with the reason, when the file is cut short) after its last; `interrupted` after
the last frame decoded when the feed is stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.core.errors import SourceError
from pipeline.core.states import SourceState
from pipeline.core.types import Entry, Frame, StatusChange
from pipeline.files.sources import PacketDamage

log = logging.getLogger(__name__)

_POLL_S = 0.1
_LAST_STATES = (SourceState.ENDED, SourceState.FAILED, SourceState.INTERRUPTED)
"""A file's statuses after which nothing of it follows."""


class FrameSource(Protocol):
    """What the feed reads: a file source (`VideoFileSource` or `SegmentedVideoSource`)."""

    source_id: str
    stopped_early: str | None

    @property
    def damage(self) -> PacketDamage:
        """Damaged packets skipped so far."""

    def __iter__(self) -> Iterator[Frame]:
        """Frames in order."""

    @property
    def expected_frames(self) -> int | None:
        """Frames it will yield, when the container says."""

    def frame_interval_s(self) -> float:
        """Seconds between processed frames."""

    def close(self) -> None:
        """Release the file."""


@dataclass(frozen=True)
class FileJob:
    """A file to process: its source id, and how to open it when its turn comes."""

    source_id: str
    path: Path
    open: Callable[[], FrameSource]
    expected_frames: int | None = None
    """Known before opening, when the file was opened already (a single file)."""


@dataclass
class _Done:
    """A decoder thread has no more files."""


@dataclass
class _Pending:
    """One file's entries taken from the queue, not yet in a batch: fewer than a batch of frames, and its status
    changes in order with them."""

    entries: list[Entry] = field(default_factory=list)
    frames: int = 0
    finished: bool = False
    """Its last status (ended, failed or interrupted) is among the entries: nothing follows."""

    def ready(self, max_frames: int) -> bool:
        return self.frames >= max_frames or (self.finished and bool(self.entries))

    def drop_frames(self) -> None:
        """Forget the frames waiting for their batch to fill (a stopped run leaves them to the one that resumes it:
        what a stopped run writes ends with a whole batch)."""
        self.entries = [entry for entry in self.entries if not isinstance(entry, Frame)]
        self.frames = 0

    def take(self) -> list[Entry]:
        """Every entry waiting: a whole batch of frames (the feed takes one as soon as it fills, so never more) or a
        finished file's last ones, with the statuses between them."""
        batch, self.entries, self.frames = self.entries, [], 0
        return batch


class FileFeed:
    """Frames and statuses of many files for the engine (`FrameFeed`)."""

    def __init__(self, jobs: list[FileJob], open_files: int = 4, queue_size: int = 64,
                 on_open: Callable[[FrameSource], None] | None = None) -> None:
        """`on_open` is called (on a decoder thread) with each file that opened."""
        self.on_open = on_open
        self._jobs: queue.Queue[FileJob] = queue.Queue()
        for job in jobs:
            self._jobs.put(job)
        self._queue: queue.Queue[Entry | _Done] = queue.Queue(maxsize=max(1, queue_size))
        self._pending: dict[str, _Pending] = {}
        self._stop = threading.Event()
        self._failed: set[str] = set()
        self._workers = [
            threading.Thread(target=self._decode_files, name=f"file-decoder{n}", daemon=True)
            for n in range(max(1, min(open_files, len(jobs))))
        ]
        self._running = len(self._workers)
        for worker in self._workers:
            worker.start()

    def next_batch(self, max_frames: int) -> list[Entry] | None:
        """The next `max_frames` frames of one file (fewer at its end) and its statuses between them; [] when none
        is ready for a moment; None when every file is done."""
        while True:
            ready = next((source_id for source_id, pending in self._pending.items() if pending.ready(max_frames)),
                         None)
            if ready is not None:
                return self._pending.pop(ready).take()
            if not self._running:
                return None
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                return []
            if isinstance(item, _Done):
                self._running -= 1
                continue
            pending = self._pending.setdefault(item.source_id, _Pending())
            if isinstance(item, StatusChange) and item.state is SourceState.INTERRUPTED:
                pending.drop_frames()  # a short batch would compute them otherwise than the run that resumes this
            pending.entries.append(item)
            pending.frames += isinstance(item, Frame)
            pending.finished |= isinstance(item, StatusChange) and item.state in _LAST_STATES

    def release(self, frames: list[Frame]) -> None:
        """Nothing to give back: file frames own their images."""

    def fail(self, source_id: str, reason: str) -> None:
        """Stop decoding a file that failed downstream."""
        self._failed.add(source_id)

    def stop(self) -> None:
        """Stop every decoder; open files end with what was decoded, the rest are not started."""
        self._stop.set()

    def _decode_files(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                self._decode(job)
        finally:
            self._queue.put(_Done())

    def _decode(self, job: FileJob) -> None:
        source_id = job.source_id
        try:
            source = job.open()
        except Exception as exc:  # missing, unreadable, too many open files, a library's error: this file fails
            reason = str(exc) if isinstance(exc, SourceError) else f"cannot open {job.path}: {exc}"
            self._put(StatusChange(source_id, SourceState.FAILED, reason), even_when_stopped=True)
            return
        if self.on_open is not None:
            self.on_open(source)
        self._put(StatusChange(source_id, SourceState.LIVE, info={"frame_interval_s": source.frame_interval_s()}))
        state, reason = SourceState.ENDED, ""
        try:
            for frame in source:
                if source_id in self._failed:
                    break  # its output has failed already and records why
                if self._stop.is_set() or not self._put(frame):
                    state, reason = SourceState.INTERRUPTED, "stopped before the end of the file"
                    break
            if source.stopped_early:
                state, reason = SourceState.FAILED, source.stopped_early
        except Exception as exc:  # a decoder error fails this file; the others go on
            state, reason = SourceState.FAILED, f"decoding failed: {exc}"
        finally:
            try:
                source.close()
            except Exception:  # every frame is in: the file still ends with its status
                log.warning("%s: closing %s failed", source_id, job.path, exc_info=True)
        damage = source.damage
        if damage.packets:
            reason = "; ".join(filter(None, [reason, damage.describe()]))
        self._put(StatusChange(source_id, state, reason, {"damaged_packets": damage.packets}), even_when_stopped=True)

    def _put(self, item: Entry, even_when_stopped: bool = False) -> bool:
        while even_when_stopped or not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False
