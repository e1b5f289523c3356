"""The inference-process side of the decoder workers: start, watch, restart, and batch fairly.

One spawned process per source decodes into that source's shared-memory `FrameRing`. A
collector thread receives their messages: frames join a per-source pending queue (a live
source keeps only its newest `keep_frames`, dropping and counting older ones), and state
changes are queued for the sinks. `next_batch` takes frames round-robin across sources, so a
fast source cannot starve the others, and sends a partial batch once `max_wait_s` passes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.config import LiveConfig, SourceSpec
from pipeline.decoder_process import DecoderSettings, backoff_delay, run_decoder
from pipeline.frame_ring import FrameRing
from pipeline.types import Frame
from pipeline.uris import mask_uri

log = logging.getLogger(__name__)

FINAL_STATES = ("ended", "failed")


@dataclass(frozen=True)
class SourceStatus:
    """A state change of one source."""

    source_id: str
    state: str
    reason: str = ""
    info: dict = field(default_factory=dict)


@dataclass
class PendingFrame:
    """A decoded frame waiting in shared memory."""

    slot: int
    index: int
    pts: float
    wall_time: float
    height: int
    width: int
    scale: float


@dataclass(frozen=True)
class SlotFrame:
    """A frame whose image lives in a shared-memory slot until `release`d."""

    frame: Frame
    slot: int
    scale: float
    """Factor the image was downscaled by to fit the slot (1.0: original size)."""


@dataclass
class SourceHandle:
    """The inference process's view of one source and its decoder process."""

    spec: SourceSpec
    settings: DecoderSettings
    ring: FrameRing
    free_slots: mp.Queue
    process: mp.Process | None = None
    state: str = "connecting"
    ever_live: bool = False
    generation: int = 0
    pending: deque = field(default_factory=deque)
    in_flight: set = field(default_factory=set)
    dropped: int = 0
    decoder_drops: int = 0
    reconnects: int = 0
    restarts: int = 0
    next_index: int = 0
    last_frame_at: float = field(default_factory=time.monotonic)
    restart_at: float | None = None

    @property
    def live(self) -> bool:
        """True when the source may drop frames rather than wait."""
        return self.settings.live

    @property
    def finished(self) -> bool:
        """True once the source ended or failed and nothing of it awaits inference."""
        return self.state in FINAL_STATES and not self.pending


class DecoderSupervisor:
    """Owns the decoder processes, their shared memory, and the fair batcher."""

    def __init__(self, specs: list[SourceSpec], live: LiveConfig, batch_size: int, realtime_files: bool = False):
        self.live = live
        self.keep_frames = live.keep_frames
        self._context = mp.get_context("spawn")
        self._messages = self._context.Queue()
        self._stop = self._context.Event()
        self._ready = threading.Condition()
        self._statuses: queue.Queue[SourceStatus] = queue.Queue()
        self._cursor = 0
        self._closed = threading.Event()
        slots = live.keep_frames + batch_size + 2
        self.handles: dict[str, SourceHandle] = {}
        for spec in specs:
            ring = FrameRing(slots, live.max_width, live.max_height)
            free: mp.Queue = self._context.Queue()
            settings = DecoderSettings(spec, live, ring.name, slots, realtime=realtime_files)
            self.handles[spec.id] = SourceHandle(spec, settings, ring, free)
        self._collector = threading.Thread(target=self._collect, name="decoder-messages", daemon=True)

    def start(self) -> None:
        """Start every decoder process and the collector thread."""
        self._collector.start()
        for handle in self.handles.values():
            self._spawn(handle)

    def statuses(self) -> list[SourceStatus]:
        """State changes received since the last call, in order."""
        changes = []
        while True:
            try:
                changes.append(self._statuses.get_nowait())
            except queue.Empty:
                return changes

    def next_batch(
        self, max_batch: int, max_wait_s: float, idle_wait_s: float = 0.2
    ) -> list[tuple[SourceHandle, SlotFrame]]:
        """Up to `max_batch` frames taken round-robin across sources (empty after `idle_wait_s` idle)."""
        with self._ready:
            if not self._pending_count():
                self._ready.wait(idle_wait_s)
            if not self._pending_count():
                return []
            deadline = time.monotonic() + max_wait_s
            while self._pending_count() < max_batch and (remaining := deadline - time.monotonic()) > 0:
                self._ready.wait(remaining)
            return self._take_round_robin(max_batch)

    def release(self, handle: SourceHandle, frame: SlotFrame) -> None:
        """Give a processed frame's slot back to its decoder."""
        with self._ready:
            handle.in_flight.discard(frame.slot)
            handle.free_slots.put(frame.slot)

    @property
    def finished(self) -> bool:
        """True when every source has ended or failed and all their frames are processed."""
        with self._ready:
            return all(handle.finished for handle in self.handles.values())

    def watch(self) -> None:
        """Restart stalled or crashed decoders of sources that are not finished (call periodically)."""
        now = time.monotonic()
        for handle in self.handles.values():
            if handle.state in FINAL_STATES:
                continue
            if handle.restart_at is not None:
                if now >= handle.restart_at:
                    handle.restart_at = None
                    self._spawn(handle)
                continue
            alive = handle.process is not None and handle.process.is_alive()
            stalled = handle.live and handle.state == "live" and now - handle.last_frame_at > self.live.stall_timeout_s
            if alive and not stalled:
                continue
            reason = f"no frame for {now - handle.last_frame_at:.0f}s" if stalled else "decoder process exited"
            log.warning("%s: %s; restarting its decoder", handle.spec.id, reason)
            self._terminate(handle)
            handle.restarts += 1
            self._set_state(handle, "reconnecting", reason)
            delay = backoff_delay(handle.restarts, self.live.backoff_initial_s, self.live.backoff_max_s)
            handle.restart_at = now + delay

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop decoders (politely, then by force), free the shared memory; open sources become ended."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for handle in self.handles.values():
            if handle.process is not None:
                handle.process.join(max(0.0, deadline - time.monotonic()))
                self._terminate(handle)
        self._closed.set()
        self._collector.join(timeout=1.0)
        for handle in self.handles.values():
            handle.ring.close()
            if handle.state not in FINAL_STATES:
                self._set_state(handle, "ended", "pipeline stopped")

    def _spawn(self, handle: SourceHandle) -> None:
        handle.generation += 1
        handle.settings = replace(
            handle.settings, first_index=handle.next_index, ever_live=handle.ever_live, generation=handle.generation
        )
        handle.last_frame_at = time.monotonic()
        self._reclaim_slots(handle)
        handle.process = self._context.Process(
            target=run_decoder,
            args=(handle.settings, self._messages, handle.free_slots, self._stop),
            name=f"decoder-{handle.spec.id}",
            daemon=True,
        )
        handle.process.start()

    def _reclaim_slots(self, handle: SourceHandle) -> None:
        """Before a decoder (re)starts, make every slot free that no waiting or in-flight frame holds."""
        with self._ready:
            held = {frame.slot for frame in handle.pending} | handle.in_flight
            while True:
                try:
                    handle.free_slots.get(timeout=0.05)
                except queue.Empty:
                    break
            for slot in range(handle.ring.slots):
                if slot not in held:
                    handle.free_slots.put(slot)

    def _terminate(self, handle: SourceHandle) -> None:
        process = handle.process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join()
        handle.process = None

    def _collect(self) -> None:
        while not self._closed.is_set():
            try:
                message = self._messages.get(timeout=0.2)
            except (queue.Empty, OSError, EOFError):
                continue
            handle = self.handles.get(message[1])
            if handle is None or message[2] != handle.generation:
                continue  # a message of a decoder since replaced; its slots were reclaimed
            with self._ready:
                if message[0] == "frame":
                    self._add_frame(handle, message)
                else:
                    self._set_state(handle, message[3], message[4], message[5])
                self._ready.notify_all()

    def _add_frame(self, handle: SourceHandle, message: tuple) -> None:
        _kind, _source, _generation, slot, index, pts, wall, height, width, scale, decoder_drops = message
        handle.dropped += decoder_drops - handle.decoder_drops
        handle.decoder_drops = decoder_drops
        handle.pending.append(PendingFrame(slot, index, pts, wall, height, width, scale))
        handle.next_index = index + 1
        handle.last_frame_at = time.monotonic()
        while handle.live and len(handle.pending) > self.keep_frames:
            oldest = handle.pending.popleft()
            handle.free_slots.put(oldest.slot)
            handle.dropped += 1

    def _set_state(self, handle: SourceHandle, state: str, reason: str = "", info: dict | None = None) -> None:
        if state == handle.state and state != "live":
            return
        if state == "live" and handle.state == "live":
            return
        if state == "reconnecting" and handle.state == "live":
            handle.reconnects += 1
        if state == "connecting" and handle.state == "reconnecting":
            state = "reconnecting"
        handle.state = state
        if state == "live":
            handle.restarts = 0
            handle.ever_live = True
        if state in FINAL_STATES or state == "reconnecting":
            handle.decoder_drops = 0
        log.info("%s: %s%s (%s)", handle.spec.id, state, f": {reason}" if reason else "", mask_uri(handle.spec.uri))
        self._statuses.put(SourceStatus(handle.spec.id, state, reason, info or {}))

    def _pending_count(self) -> int:
        return sum(len(handle.pending) for handle in self.handles.values())

    def _take_round_robin(self, max_batch: int) -> list[tuple[SourceHandle, SlotFrame]]:
        handles = list(self.handles.values())
        taken: list[tuple[SourceHandle, SlotFrame]] = []
        while len(taken) < max_batch and self._pending_count():
            for offset in range(len(handles)):
                handle = handles[(self._cursor + offset) % len(handles)]
                if handle.pending and len(taken) < max_batch:
                    taken.append((handle, self._frame(handle, handle.pending.popleft())))
            self._cursor = (self._cursor + 1) % len(handles)
        return taken

    def _frame(self, handle: SourceHandle, pending: PendingFrame) -> SlotFrame:
        handle.in_flight.add(pending.slot)
        image: np.ndarray = handle.ring.view(pending.slot, pending.height, pending.width)
        frame = Frame(handle.spec.id, pending.index, pending.pts, pending.wall_time, image)
        return SlotFrame(frame, pending.slot, pending.scale)
