"""The decoder worker process: opens one source, decodes it into shared memory, reconnects.

It runs in its own process (spawned, so no state of the inference process is inherited)
and talks to the inference process only through small typed messages (`messages`):
`StatusReport` (connecting, live, reconnecting, ended, failed) and `FrameReady`.

Frames go into free slots of the source's `FrameRing`; the inference process hands slots
back through `free_slots`, a list of slots per message, once their pixels are copied. A
live source never waits for a slot (it drops the frame and counts it); a file waits, so
files never drop.

Both channels are one-way pipes of this decoder generation alone, and `stop` is a
lock-free shared flag: a decoder killed at any moment holds no lock that another decoder
or its own successor would wait on.
"""

from __future__ import annotations

import random
import signal
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

import av

from pipeline.core.config import LiveConfig, SourceSpec
from pipeline.core.frame_ring import FrameRing
from pipeline.core.states import SourceState
from pipeline.core.uris import describe_open_error, is_live, mask_uri, open_container
from pipeline.files.sources import PacketDecoder, decode_on_one_thread, rotate_for_display, truncation, video_info
from pipeline.live.messages import FrameReady, StatusReport


@dataclass(frozen=True)
class DecoderSettings:
    """Everything a decoder process needs (picklable)."""

    spec: SourceSpec
    live_config: LiveConfig
    ring_name: str
    slots: int
    realtime: bool = False
    """Pace a file at its own frame rate, as a camera would (it may then drop frames)."""
    first_index: int = 0
    """Frame index to continue from when the process is restarted."""
    ever_live: bool = False
    generation: int = 0
    """Counts restarts; messages of an older generation are ignored by the inference process."""

    @property
    def live(self) -> bool:
        """True when frames must never wait: network streams, devices and paced files."""
        return is_live(self.spec.uri) or self.realtime


def backoff_delay(attempt: int, initial_s: float, max_s: float) -> float:
    """Capped exponential backoff with full jitter for reconnect attempt `attempt` (1-based)."""
    ceiling = min(max_s, initial_s * (2 ** max(0, attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class _ReadResult:
    """How reading one opened container ended."""

    reached_end: bool
    """True at the end of the stream, False after an error (or, for a file, when it is cut short)."""
    reason: str
    frames: int
    """Frames decoded from this container."""
    damaged_packets: int = 0
    """A file's damaged packets, skipped or decoded with the damage concealed (`reason` describes them)."""


def _file_result(container: av.container.InputContainer, stream: av.VideoStream, decoder: PacketDecoder,
                 decoded: int) -> _ReadResult:
    """How a file read to its last packet ended: cut short (its packets end before its stated duration),
    or complete, with the damaged packets that were skipped or concealed."""
    cut = truncation(video_info(container, stream), decoded, decoder.packets_end_s if decoder.packets else 0.0)
    damage = decoder.damage.describe() if decoder.damage.packets else ""
    return _ReadResult(cut is None, "; ".join(filter(None, [cut, damage])), decoded, decoder.damage.packets)


class _Stopped(Exception):
    """The inference process closed its end: stop decoding."""


def run_decoder(settings: DecoderSettings, messages: Connection, free_slots: Connection, stop: Synchronized) -> None:
    """Process entry point: decode until the source ends, fails permanently, or `stop` is set.

    Ctrl-C in a terminal reaches the whole process group: the decoder ignores it and stops
    when the inference process sets `stop`, after what it decoded was handed over."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    live = settings.live_config
    ring = FrameRing(settings.slots, live.max_width, live.max_height, name=settings.ring_name)
    try:
        _Decoder(settings, ring, messages, free_slots, stop).run()
    except _Stopped:
        pass
    finally:
        ring.close()


class _Decoder:
    def __init__(self, settings: DecoderSettings, ring: FrameRing, messages: Connection, free_slots: Connection,
                 stop: Synchronized):
        self.s = settings
        self.spec = settings.spec
        self.cfg = settings.live_config
        self.ring = ring
        self.messages = messages
        self.free_slots = free_slots
        self.stop = stop
        self.index = settings.first_index
        self.ever_live = settings.ever_live
        self.drops = 0
        self.pts_offset = 0.0
        self.last_pts = 0.0
        self.free: deque[int] = deque()

    def run(self) -> None:
        attempts = 0
        self._status(SourceState.RECONNECTING if self.ever_live else SourceState.CONNECTING, "")
        while not self.stop.value:
            try:
                container = open_container(self.spec.uri, self.cfg.transport, self.cfg.open_timeout_s, self.cfg.read_timeout_s)
            except Exception as exc:  # every FFmpeg/OS error is classified below
                permanent, reason = describe_open_error(exc, self.spec.uri)
                attempts += 1
                if permanent or (not self.ever_live and attempts >= self.cfg.connect_attempts):
                    self._status(SourceState.FAILED, f"{reason} (after {attempts} attempt{'s' * (attempts > 1)})")
                    return
                self._retry_after(attempts, reason)
                continue
            try:
                result = self._read(container)
            finally:
                container.close()
            if self.stop.value:
                return
            if result.frames:
                attempts = 0  # a connection that delivered frames starts the backoff afresh
            if not is_live(self.spec.uri):
                if result.reached_end and self.spec.loop:
                    self.pts_offset = self.last_pts + 1e-3
                    continue
                state = SourceState.ENDED if result.reached_end else SourceState.FAILED  # as `process` reports a file
                self._status(state, result.reason, {"damaged_packets": result.damaged_packets})
                return
            attempts += 1
            self._retry_after(attempts, result.reason or "stream ended")

    def _retry_after(self, attempt: int, reason: str) -> None:
        """Report the source reconnecting (at once, so no wait reads as a stall), then back off."""
        self._status(SourceState.RECONNECTING, reason)
        self._wait(backoff_delay(attempt, self.cfg.backoff_initial_s, self.cfg.backoff_max_s))

    def _read(self, container: av.container.InputContainer) -> _ReadResult:
        """Decode until the end or an error."""
        if not container.streams.video:
            return _ReadResult(False, "no video stream", 0)
        stream = container.streams.video[0]
        live = is_live(self.spec.uri)
        decoder = None if live else PacketDecoder(stream)  # a file: damaged packets skipped as `process` does
        if decoder is None:
            stream.thread_type = "AUTO"
        else:
            decode_on_one_thread(stream)
        frames = container.decode(stream) if decoder is None else decoder.frames(container.demux(stream))
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        started_wall = time.time()
        first_pts: float | None = None
        last_emitted = -1e9
        decoded = 0
        try:
            for frame in frames:
                if self.stop.value:
                    return _ReadResult(False, "stopped", decoded)
                if decoded == 0:
                    self.ever_live = True
                    self._status(SourceState.LIVE, "", {"width": frame.width, "height": frame.height, "fps": rate,
                                                        "frame_interval_s": self.spec.stride / (rate or 30.0)})
                decoded += 1
                pts = frame.time if frame.time is not None else decoded / (rate or 25.0)
                first_pts = pts if first_pts is None else first_pts
                if (decoded - 1) % self.spec.stride:
                    continue
                clock = time.time() - started_wall if live else pts - first_pts
                if self.spec.max_fps and clock - last_emitted < 1.0 / self.spec.max_fps - 1e-6:
                    continue
                last_emitted = clock
                if self.s.realtime:
                    self._wait(started_wall + (pts - first_pts) - time.time())
                self._emit(frame, pts + self.pts_offset)
        except av.error.FFmpegError as exc:
            return _ReadResult(False, describe_open_error(exc, self.spec.uri)[1], decoded)
        return _ReadResult(True, "", decoded) if decoder is None else _file_result(container, stream, decoder, decoded)

    def _emit(self, frame: av.VideoFrame, pts: float) -> None:
        slot = self._take_slot()
        if slot is None:
            return
        image = rotate_for_display(frame.to_ndarray(format="bgr24"), frame.rotation)
        source_height, source_width = image.shape[:2]
        height, width, _scale = self.ring.write(slot, image)
        self.last_pts = pts
        self._send(FrameReady(self.spec.id, self.s.generation, slot, self.index, pts, time.time(), height, width,
                              self.drops, source_width, source_height))
        self.index += 1

    def _take_slot(self) -> int | None:
        """A free slot; a live source that has none drops the frame, a file waits for one."""
        try:
            while self.free_slots.poll(0):
                self.free.extend(self.free_slots.recv())
            while not self.free:
                if self.s.live:
                    self.drops += 1
                    self.index += 1
                    return None
                if self.stop.value:
                    return None
                if self.free_slots.poll(0.2):
                    self.free.extend(self.free_slots.recv())
        except (EOFError, OSError):
            raise _Stopped from None
        return self.free.popleft()

    def _status(self, state: SourceState, reason: str, info: dict | None = None) -> None:
        self._send(StatusReport(self.spec.id, self.s.generation, state, mask_uri(reason), info or {}))

    def _send(self, message: FrameReady | StatusReport) -> None:
        try:
            self.messages.send(message)
        except OSError:  # the inference process is gone or stopping
            raise _Stopped from None

    def _wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when `stop` is set."""
        deadline = time.monotonic() + seconds
        while not self.stop.value and (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(remaining, 0.05))
