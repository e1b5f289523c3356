"""The engine's feed for recorded files: several files decoded at once, batches across them.

Files are opened when their turn comes. Up to `open_files` are decoded at the same time,
each on its own thread (PyAV releases
the GIL while decoding; a long file may also decode in segment processes, see `segments`).
Their frames meet in one bounded queue, so decoders wait when inference is behind: files
never drop frames. A file's status travels in the same queue, in order with its frames:
`live` before its first frame, `ended` (with the damaged packets that were skipped, if any)
or `failed` (with the reason, when the file is cut short) after its last; `interrupted` after
the last frame decoded when the feed is stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.core.errors import SourceError
from pipeline.core.states import SourceState
from pipeline.core.types import Entry, Frame, StatusChange
from pipeline.files.sources import PacketDamage

log = logging.getLogger(__name__)

_POLL_S = 0.1


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


class FileFeed:
    """Frames and statuses of many files for the engine (`FrameFeed`)."""

    def __init__(self, jobs: list[FileJob], open_files: int = 4, queue_size: int = 64,
                 max_wait_s: float = 0.025, on_open: Callable[[FrameSource], None] | None = None) -> None:
        """`on_open` is called (on a decoder thread) with each file that opened."""
        self.max_wait_s = max_wait_s
        self.on_open = on_open
        self._jobs: queue.Queue[FileJob] = queue.Queue()
        for job in jobs:
            self._jobs.put(job)
        self._queue: queue.Queue[Entry | _Done] = queue.Queue(maxsize=max(1, queue_size))
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
        """Up to `max_frames` frames and the statuses between them; None when every file is done."""
        entries: list[Entry] = []
        frames = 0
        timeout = _POLL_S
        while frames < max_frames and self._running:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if isinstance(item, _Done):
                self._running -= 1
                continue
            entries.append(item)
            frames += isinstance(item, Frame)
            timeout = self.max_wait_s
        if not entries and not self._running:
            return None
        return entries

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
            source.close()
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
