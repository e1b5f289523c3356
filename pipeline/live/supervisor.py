"""Decoder processes of live sources: start, stop and restart them, and collect their messages.

One spawned process per source decodes into that source's shared-memory `FrameRing`. The
collector thread turns their typed messages into each `SourceHandle`'s pending frames and
state changes. Batching (`feed`) and stall watching (`watchdog`) build on this.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import replace

from pipeline.core.config import LiveConfig, SourceSpec
from pipeline.core.frame_ring import FrameRing
from pipeline.core.states import SourceState
from pipeline.live.decoder_process import DecoderSettings, run_decoder
from pipeline.live.messages import DecoderMessage, FrameReady
from pipeline.live.source_handle import SourceHandle

log = logging.getLogger(__name__)


class DecoderSupervisor:
    """Owns the decoder processes and their shared memory; `ready` guards every handle."""

    def __init__(self, specs: list[SourceSpec], live: LiveConfig, batch_size: int, realtime_files: bool = False):
        self.live = live
        self.ready = threading.Condition()
        """Held while reading or changing handles; notified when a message arrived."""
        self._context = mp.get_context("spawn")
        self._messages = self._context.Queue()
        self._stop = self._context.Event()
        self._closed = threading.Event()
        slots = live.keep_frames + batch_size * 2 + 2
        self.handles: dict[str, SourceHandle] = {}
        for spec in specs:
            ring = FrameRing(slots, live.max_width, live.max_height)
            settings = DecoderSettings(spec, live, ring.name, slots, realtime=realtime_files)
            self.handles[spec.id] = SourceHandle(spec, settings, ring, self._context.Queue())
        self._collector = threading.Thread(target=self._collect, name="decoder-messages", daemon=True)

    def start(self) -> None:
        """Start every decoder process and the collector thread."""
        self._collector.start()
        for handle in self.handles.values():
            self.spawn(handle)

    def give_back(self, handle: SourceHandle, slots: list[int]) -> None:
        """Hand slots back to a source's decoder, in one message (call holding `ready`)."""
        handle.in_flight.difference_update(slots)
        if slots:
            handle.free_slots.put(slots)

    def spawn(self, handle: SourceHandle) -> None:
        """(Re)start a source's decoder process, continuing its frame numbering."""
        with self.ready:
            handle.generation += 1
            handle.settings = replace(handle.settings, first_index=handle.next_index, ever_live=handle.ever_live,
                                      generation=handle.generation)
            handle.last_frame_at = time.monotonic()
            handle.exited_at = None
            self._reclaim_slots(handle)
        process = self._context.Process(
            target=run_decoder,
            args=(handle.settings, self._messages, handle.free_slots, self._stop),
            name=f"decoder-{handle.spec.id}",
            daemon=True,
        )
        process.start()
        handle.process = process

    def terminate(self, handle: SourceHandle) -> None:
        """Stop a source's decoder process, by force if it does not go (may take seconds)."""
        process, handle.process = handle.process, None
        if process is not None and process.is_alive():
            process.terminate()
            process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop decoders (politely, then by force); sources still open become `ended`."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for handle in self.handles.values():
            if handle.process is not None:
                handle.process.join(max(0.0, deadline - time.monotonic()))
                self.terminate(handle)
        self._closed.set()
        self._collector.join(timeout=1.0)
        with self.ready:
            for handle in self.handles.values():
                handle.transition(SourceState.ENDED, "pipeline stopped")
            self.ready.notify_all()

    def close(self) -> None:
        """Free the shared memory (after `stop`, once no frame is in use)."""
        for handle in self.handles.values():
            handle.ring.close()

    def _reclaim_slots(self, handle: SourceHandle) -> None:
        """Before a decoder (re)starts, make every slot free that no waiting or in-flight frame holds."""
        held = {item.slot for item in handle.pending if isinstance(item, FrameReady)} | handle.in_flight
        while True:
            try:
                handle.free_slots.get(timeout=0.05)
            except queue.Empty:
                break
        handle.free_slots.put([slot for slot in range(handle.ring.slots) if slot not in held])

    def _collect(self) -> None:
        while not self._closed.is_set():
            try:
                message: DecoderMessage = self._messages.get(timeout=0.2)
            except (queue.Empty, OSError, EOFError):
                continue
            with self.ready:
                handle = self.handles.get(message.source_id)
                if handle is None or message.generation != handle.generation or handle.failure:
                    continue  # a message of a decoder since replaced or stopped; its slots were reclaimed
                if isinstance(message, FrameReady):
                    self.give_back(handle, handle.add_frame(message, self.live.keep_frames))
                else:
                    handle.transition(message.state, message.reason, message.info)
                self.ready.notify_all()
