"""Decoder processes of live sources: start, stop and restart them, and collect their messages.

One spawned process per source decodes into that source's shared-memory `FrameRing`. Each
decoder generation gets its own pipes (messages up, free slots down), so a decoder killed
mid-write cannot block another source or its own successor. The collector thread turns
the messages into each `SourceHandle`'s pending frames and state changes. Batching
(`feed`) and stall watching (`watchdog`) build on this.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import threading
import time
from dataclasses import replace
from multiprocessing.connection import wait

from pipeline.core.config import LiveConfig, SourceSpec
from pipeline.core.frame_ring import FrameRing
from pipeline.core.states import SourceState
from pipeline.live.decoder_process import DecoderSettings, run_decoder
from pipeline.live.messages import DecoderMessage, FrameReady
from pipeline.live.source_handle import SourceHandle

log = logging.getLogger(__name__)


class DecoderSupervisor:
    """Owns the decoder processes and their shared memory; `ready` guards every handle."""

    def __init__(self, specs: list[SourceSpec], live: LiveConfig, batch_size: int, realtime_files: bool = False,
                 in_flight_batches: int = 2):
        """`in_flight_batches`: batches the engine may hold before inference (all lanes), which may all be
        one source's frames; each source's ring has room for those, its waiting frames and two more."""
        self.live = live
        self.ready = threading.Condition()
        """Held while reading or changing handles; notified when a message arrived."""
        self._context = mp.get_context("spawn")
        self._stop = self._context.RawValue(ctypes.c_bool, False)
        self._closed = threading.Event()
        slots = live.keep_frames + batch_size * in_flight_batches + 2
        self.handles: dict[str, SourceHandle] = {}
        for spec in specs:
            ring = FrameRing(slots, live.max_width, live.max_height)
            settings = DecoderSettings(spec, live, ring.name, slots, realtime=realtime_files)
            self.handles[spec.id] = SourceHandle(spec, settings, ring)
        self._collector = threading.Thread(target=self._collect, name="decoder-messages", daemon=True)

    def start(self) -> None:
        """Start every decoder process and the collector thread."""
        self._collector.start()
        for handle in self.handles.values():
            self.spawn(handle)

    def give_back(self, handle: SourceHandle, slots: list[int]) -> None:
        """Hand slots back to a source's decoder, in one message (call holding `ready`)."""
        handle.in_flight.difference_update(slots)
        if slots and handle.free_slots is not None:
            try:
                handle.free_slots.send(slots)
            except OSError:  # that decoder is gone; its successor starts with every slot not held
                pass

    @property
    def stopping(self) -> bool:
        """True once `stop` was called."""
        return bool(self._stop.value)

    def spawn(self, handle: SourceHandle) -> None:
        """(Re)start a source's decoder process with new pipes, continuing its frame numbering.

        If the process cannot start (no memory, too many processes), the source is left without
        a decoder: the watchdog then restarts it later or, for a file, fails it."""
        messages_in, messages_out = self._context.Pipe(duplex=False)
        slots_in, slots_out = self._context.Pipe(duplex=False)
        with self.ready:
            handle.generation += 1
            handle.settings = replace(handle.settings, first_index=handle.next_index, ever_live=handle.ever_live,
                                      generation=handle.generation)
            handle.last_frame_at = time.monotonic()
            handle.decoder_drops = 0
            handle.messages, handle.free_slots = messages_in, slots_out
            held = {item.slot for item in handle.pending if isinstance(item, FrameReady)} | handle.in_flight
            slots_out.send([slot for slot in range(handle.ring.slots) if slot not in held])
        process = self._context.Process(
            target=run_decoder,
            args=(handle.settings, messages_out, slots_in, self._stop),
            name=f"decoder-{handle.spec.id}",
            daemon=True,
        )
        try:
            process.start()
        except OSError as exc:
            log.error("%s: cannot start a decoder process: %s", handle.spec.id, exc)
            with self.ready:
                handle.messages = handle.free_slots = handle.process = None
            messages_in.close()
            slots_out.close()
            return
        finally:
            messages_out.close()  # the decoder holds the only write end: its exit reads as end of file
            slots_in.close()
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
        self._stop.value = True
        deadline = time.monotonic() + timeout_s
        for handle in self.handles.values():
            if handle.process is not None:
                handle.process.join(max(0.0, deadline - time.monotonic()))
                self.terminate(handle)
        drained_by = time.monotonic() + 2.0  # the collector reads what they sent up to their end of file
        while time.monotonic() < drained_by and any(h.messages is not None for h in self.handles.values()):
            time.sleep(0.02)
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

    def _collect(self) -> None:
        while not self._closed.is_set():
            with self.ready:
                channels = {handle.messages: handle for handle in self.handles.values() if handle.messages is not None}
            if not channels:
                self._closed.wait(0.2)
                continue
            for channel in wait(list(channels), timeout=0.2):
                handle = channels[channel]
                try:
                    message: DecoderMessage = channel.recv()
                except Exception as exc:  # end of file, or a message cut short by the decoder's death
                    if not isinstance(exc, (EOFError, OSError)):
                        log.warning("%s: unreadable message from its decoder (%s)", handle.spec.id, exc)
                    with self.ready:
                        if handle.messages is channel:
                            handle.messages = None
                    channel.close()
                    continue
                with self.ready:
                    if message.generation != handle.generation or handle.failure:
                        continue  # a message of a decoder since replaced or stopped; its slots were reclaimed
                    if isinstance(message, FrameReady):
                        self.give_back(handle, handle.add_frame(message, self.live.keep_frames))
                    else:
                        handle.transition(message.state, message.reason, message.info)
                    self.ready.notify_all()
