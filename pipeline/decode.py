"""A decoder worker: decodes a source on its own thread into a bounded queue."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

from pipeline.types import Frame

_END = object()


class DecoderWorker:
    """Runs `frames` (an iterable of `Frame`) on a thread, so decoding overlaps inference.

    The queue is bounded: a file source waits when inference is behind (it never drops).
    PyAV releases the GIL while decoding, so the thread runs truly in parallel.
    """

    def __init__(self, frames: Iterable[Frame], queue_size: int = 64) -> None:
        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decoder", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> DecoderWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def batches(self, batch_size: int) -> Iterator[list[Frame]]:
        """Frames grouped into lists of up to `batch_size`, in decode order; re-raises decoder errors."""
        batch: list[Frame] = []
        while True:
            item = self._queue.get()
            if item is _END:
                break
            batch.append(item)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Ask the thread to finish and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def _run(self) -> None:
        try:
            for frame in self._frames:
                while not self._stop.is_set():
                    try:
                        self._queue.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer thread
            self.error = exc
        finally:
            self._queue.put(_END)
