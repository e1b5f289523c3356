"""Decoding one long recording in several processes: split at keyframes, merged back in frame order.

`plan_segments` demuxes the video stream's packets without decoding them and cuts the file
at keyframes into segments of roughly equal frame counts. A segment is the half-open pts
range [start_pts, end_pts): its first frame is a keyframe, and its `first_index` is the number
of packets with a smaller pts, which is the global index of that keyframe's frame.

The decoding rule, correct for open GOPs too: a segment seeks to its keyframe, decodes,
drops frames with pts < start_pts (leading pictures that belong to the previous segment and
may reference frames before the keyframe), emits the frames with start_pts <= pts < end_pts
and stops at the first decoded frame with pts >= end_pts. A decoder outputs frames in pts
order, so when that frame appears every frame with a smaller pts has been output: a segment
decodes a little past its end keyframe to emit its own trailing frames (the next segment's
leading pictures), and every frame is emitted by exactly one segment. The global index of a
frame is `first_index` plus its position among its segment's frames; `stride` and
`max_frames` act on that global index exactly as in `VideoFileSource`.

`SegmentedVideoSource` runs the segments in spawned worker processes, worker w taking
segments w, w + workers, ...; each decodes into its own shared-memory `FrameRing` (bounded:
a worker waits for a free slot when the consumer is behind, files never drop frames) and
sends `SegmentFrame` / `SegmentEnd` messages through its queue. The consumer yields
segment 0's frames, then segment 1's, and so on, copying each image out of shared memory
before it frees the slot.
"""

from __future__ import annotations

import bisect
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import av
import numpy as np

from pipeline.core.frame_ring import FrameRing
from pipeline.core.types import Frame
from pipeline.files.sources import (
    PacketDamage,
    PacketDecoder,
    VideoFileSource,
    VideoInfo,
    _describe,
    decode_on_one_thread,
    rotate_for_display,
    truncation,
)

MAX_DECODE_WORKERS = 8
SEGMENT_BUFFER_BYTES = 256 << 20
"""Shared memory the workers of one source fill with decoded frames at most (unless `slots` is given)."""
MIN_SLOTS, MAX_SLOTS = 4, 64
SEEK_ATTEMPTS = 6


@dataclass(frozen=True)
class Segment:
    """A run of frames between two keyframes, as a half-open pts range in stream time-base units."""

    start_pts: int | None
    """Pts of the segment's keyframe; None for the first segment (from the start of the file)."""
    end_pts: int | None
    """Pts of the next segment's keyframe (exclusive); None for the last segment."""
    first_index: int
    """Packets with a pts below `start_pts`: the global index of the segment's first frame."""
    frames: int
    """Packets in the segment: the frames it decodes when every packet gives one frame."""


def plan_segments(path: str | Path, parts: int | None, min_frames_per_part: int = 300) -> list[Segment]:
    """Cut the video stream of `path` at keyframes into up to `parts` segments of similar frame counts.

    Only packets are read (no decoding). Each segment gets at least `min_frames_per_part`
    frames, so a short file or one with few keyframes gets fewer segments; `parts=None`
    asks for as many segments as that allows. A file with a packet without pts, or whose
    demuxing fails part-way, is one segment (of the packets read), to be decoded serially.
    Packets flagged for discarding (an edit list's hidden frames) are not counted: a decoder
    does not output them.
    """
    pts: list[int] = []
    keyframes: list[int] = []
    total = 0
    with av.open(str(path), mode="r") as container:
        try:
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0 or packet.is_discard:
                    continue
                total += 1
                if packet.pts is not None:
                    pts.append(packet.pts)
                    if packet.is_keyframe:
                        keyframes.append(packet.pts)
        except av.error.FFmpegError:
            return [Segment(None, None, 0, total)]
    if len(pts) < total:
        return [Segment(None, None, 0, total)]
    pts.sort()
    minimum = max(1, min_frames_per_part)
    parts = max(1, min(parts or total, total // minimum))
    start_of = {bisect.bisect_left(pts, key): key for key in keyframes}
    candidates = sorted(start_of)
    cuts: list[int] = []
    for part in range(1, parts):
        low = bisect.bisect_left(candidates, (cuts[-1] if cuts else 0) + minimum)
        high = bisect.bisect_right(candidates, total - minimum)
        if low >= high:
            break
        target = part * total / parts
        at = bisect.bisect_left(candidates, target, low, high)
        cuts.append(min(candidates[max(low, at - 1) : min(high, at + 1)], key=lambda rank: abs(rank - target)))
    firsts = [0, *cuts]
    ends = [*cuts, total]
    return [
        Segment(
            start_pts=start_of[first] if first else None,
            end_pts=start_of[end] if end < total else None,
            first_index=first,
            frames=end - first,
        )
        for first, end in zip(firsts, ends)
    ]


def decode_workers_for(cpu_count: int | None = None) -> int:
    """Segment decoder processes the cores allow: half of them (the engine's threads use the rest), 1 to 8."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(MAX_DECODE_WORKERS, cores // 2))


@dataclass(frozen=True)
class SegmentFrame:
    """Worker to consumer: a frame of `segment` waits in `slot` of the worker's ring."""

    segment: int
    slot: int
    index: int
    pts: float
    wall_time: float
    height: int
    width: int


@dataclass(frozen=True)
class SegmentEnd:
    """Worker to consumer: `segment` is done after `frames` of its frames (skipped ones included).

    `error` is set when decoding failed there, `damaged` when it stopped at a damaged packet;
    `last_pts` is the pts (seconds) of the last frame decoded, `packets_end_s` the end of the
    latest packet read (the file's end for the last segment).
    """

    segment: int
    frames: int
    last_pts: float
    error: str | None = None
    damaged: bool = False
    packets_end_s: float | None = None


class _SegmentError(Exception):
    """A segment that cannot be decoded by the rule (no pts, a seek that missed its keyframe, a resize)."""


class _SegmentDecoder:
    """Applies the decoding rule to one segment of an open container; counts what it decoded.

    Damaged packets are skipped and counted as in `VideoFileSource` (`damage`, for packets from
    the segment's keyframe on). With `stop_at_damage` (in the worker processes) the segment
    ends before the first frame decoded after a damaged packet instead: the consumer then goes
    on in its own process from an earlier keyframe, so that frames after the damage are decoded
    from the same references as in `VideoFileSource`.
    """

    def __init__(self, segment: Segment, stride: int, limit: int | None, stop_at_damage: bool = False) -> None:
        self.segment = segment
        self.stride = stride
        self.limit = limit
        self.stop_at_damage = stop_at_damage
        self.frames = 0
        self.last_pts = 0.0
        self.packets: PacketDecoder | None = None

    @property
    def damage(self) -> PacketDamage:
        """Damaged packets met from the segment's keyframe on."""
        return self.packets.damage if self.packets is not None else PacketDamage()

    @property
    def packets_end_s(self) -> float | None:
        """End (seconds) of the latest packet read."""
        return self.packets.packets_end_s if self.packets is not None else None

    def emitted(self, container: av.container.InputContainer) -> Iterator[tuple[int, float, av.VideoFrame]]:
        """(global index, pts in seconds, frame) of the segment's frames that stride and limit keep."""
        stream = container.streams.video[0]
        start = stream.start_time or 0
        for decoded in self._from_start(container, stream):
            if self.stop_at_damage and self.damage.packets:
                return
            if self.segment.end_pts is not None and decoded.pts >= self.segment.end_pts:
                return
            index = self.segment.first_index + self.frames
            if self.limit is not None and index >= self.limit:
                return
            self.frames += 1
            self.last_pts = float((decoded.pts - start) * stream.time_base)
            if index % self.stride == 0:
                yield index, self.last_pts, decoded

    def _from_start(self, container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
        """Decoded frames from the segment's keyframe on (leading pictures dropped).

        A container whose seek can land past the keyframe (MPEG-TS seeks by a timestamp search)
        is sought again, ever earlier; the frames decoded before the keyframe are dropped.
        """
        start_pts = self.segment.start_pts
        if start_pts is None:
            yield from self._decoded(container, stream)
            return
        second = max(1, round(1 / stream.time_base)) if stream.time_base else 1
        for attempt in range(SEEK_ATTEMPTS):
            before = second << (attempt - 1) if attempt else 0  # the keyframe, then 1 s, 2 s, 4 s... before it
            container.seek(start_pts - before, stream=stream, backward=True, any_frame=False)
            frames = self._decoded(container, stream)
            first = next((decoded for decoded in frames if decoded.pts >= start_pts), None)
            if first is not None and first.pts == start_pts:
                yield first
                yield from frames
                return
            if self.stop_at_damage and self.damage.packets:
                return
        raise _SegmentError(f"seeking to the keyframe at pts {start_pts} lands past it")

    def _decoded(self, container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
        """Frames from the container's position on, damaged packets skipped (counted from the keyframe on)."""
        self.packets = PacketDecoder(stream, count_from_pts=self.segment.start_pts)
        for decoded in self.packets.frames(container.demux(stream)):
            if decoded.pts is None:
                raise _SegmentError("a decoded frame has no pts")
            yield decoded


def _open(path: str) -> av.container.InputContainer:
    """The file opened for segment decoding, decoded on one thread as in `VideoFileSource`."""
    container = av.open(path, mode="r")
    decode_on_one_thread(container.streams.video[0])
    return container


@dataclass(frozen=True)
class _WorkerJob:
    """Everything a worker process needs (picklable)."""

    path: str
    segments: tuple[tuple[int, Segment], ...]
    """(segment number, segment), in the order the consumer reads them."""
    ring_name: str
    slots: int
    width: int
    height: int
    stride: int
    limit: int | None
    """First global index not to emit (max_frames * stride), or None."""
    parent_pid: int
    """The consuming process: a worker whose parent died (kill -9, the OOM killer) stops and frees the ring."""


def _run_worker(job: _WorkerJob, messages: Queue, free_slots: Queue, stop: Event) -> None:
    """Worker process entry point: decode the job's segments in order into the shared ring."""
    ring = FrameRing(job.slots, job.width, job.height, name=job.ring_name)
    number, decoder = job.segments[0][0], None
    try:
        with _open(job.path) as container:
            for number, segment in job.segments:
                decoder = _SegmentDecoder(segment, job.stride, job.limit, stop_at_damage=True)
                for index, pts, decoded in decoder.emitted(container):
                    image = rotate_for_display(decoded.to_ndarray(format="bgr24"), decoded.rotation)
                    if image.nbytes > ring.slot_bytes:
                        raise _SegmentError(f"frame size changed to {image.shape[1]}x{image.shape[0]}")
                    slot = _take_slot(free_slots, stop, job.parent_pid)
                    if slot is None:
                        return
                    ring.view(slot, image.shape[0], image.shape[1])[...] = image
                    messages.put(SegmentFrame(number, slot, index, pts, time.time(), image.shape[0], image.shape[1]))
                damaged = decoder.damage.packets > 0
                messages.put(SegmentEnd(number, decoder.frames, decoder.last_pts, None, damaged, decoder.packets_end_s))
                if damaged:  # the consumer decodes the rest itself
                    return
    except (av.error.FFmpegError, OSError, _SegmentError) as exc:
        frames, last_pts = (decoder.frames, decoder.last_pts) if decoder else (0, 0.0)
        messages.put(SegmentEnd(number, frames, last_pts, _describe(exc)))
    except KeyboardInterrupt:
        pass
    finally:
        ring.close()
        if os.getppid() != job.parent_pid:  # nobody is left to free the shared memory
            ring.free()


def _take_slot(free_slots: Queue, stop: Event, parent_pid: int) -> int | None:
    """A free slot, waiting while the consumer is behind; None once `stop` is set or the consumer is gone."""
    while not stop.is_set() and os.getppid() == parent_pid:
        try:
            return free_slots.get(timeout=0.2)
        except queue.Empty:
            continue
    return None


@dataclass
class _Worker:
    """One worker process with its ring and queues, as the consumer holds them."""

    process: BaseProcess
    ring: FrameRing
    messages: Queue
    free_slots: Queue


class _WorkerPool:
    """The worker processes of one iteration with their rings and queues; `close` always cleans up."""

    def __init__(self, job: _WorkerJob, segments: list[Segment], workers: int, source_id: str) -> None:
        context = mp.get_context("spawn")
        self.source_id = source_id
        self._stop = context.Event()
        self._workers: list[_Worker] = []
        numbered = list(enumerate(segments))
        try:
            for worker in range(workers):
                ring = FrameRing(job.slots, job.width, job.height)
                messages, free_slots = context.Queue(), context.Queue()
                for slot in range(job.slots):
                    free_slots.put(slot)
                own = replace(job, segments=tuple(numbered[worker::workers]), ring_name=ring.name)
                process = context.Process(
                    target=_run_worker,
                    args=(own, messages, free_slots, self._stop),
                    name=f"segment-decoder-{worker}",
                    daemon=True,
                )
                self._workers.append(_Worker(process, ring, messages, free_slots))
                process.start()
        except BaseException:
            self.close()
            raise

    def receive(self, number: int) -> Frame | SegmentEnd | None:
        """The next frame of segment `number` (its image copied, its slot freed), or the segment's end.

        None when the segment's worker died without saying why.
        """
        worker = self._workers[number % len(self._workers)]
        message = self._receive(worker)
        if not isinstance(message, SegmentFrame):
            return message
        image = np.array(worker.ring.view(message.slot, message.height, message.width))
        worker.free_slots.put(message.slot)
        return Frame(self.source_id, message.index, message.pts, message.wall_time, image)

    def exit_code(self, number: int) -> int | None:
        """Exit code of the worker that decodes segment `number` (None while it runs)."""
        return self._workers[number % len(self._workers)].process.exitcode

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the workers (politely, then by force) and free the shared memory; idempotent."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            process = worker.process
            if process.pid is not None:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.terminate()
                    process.join(1.0)
                if process.is_alive():
                    process.kill()
                    process.join()
            for channel in (worker.messages, worker.free_slots):
                channel.close()
                channel.cancel_join_thread()
            worker.ring.close()
        self._workers = []

    @staticmethod
    def _receive(worker: _Worker) -> SegmentFrame | SegmentEnd | None:
        while worker.process.is_alive():
            try:
                return worker.messages.get(timeout=0.5)
            except queue.Empty:
                continue
        try:  # what a worker sent before it exited is in the pipe by now
            return worker.messages.get(timeout=0.5)
        except queue.Empty:
            return None


class SegmentedVideoSource:
    """Decodes one video file in `workers` processes, split at keyframes; yields `Frame`s in frame order.

    The same surface as `VideoFileSource`: the file is opened and checked by one, whose
    `info` and `expected_frames` this source reports. A file too short for two segments is
    decoded by that `VideoFileSource` in this process.

    Each worker buffers up to `slots` decoded frames (by default as many as
    `SEGMENT_BUFFER_BYTES` allows, 4 to 64) and segments are about as long as that buffer
    (`min_frames_per_segment`, by default `slots * stride` frames, never shorter than the
    file's GOP): the consumer reads the segments in order, so a worker gets ahead of it only
    by what it can buffer, and short segments dealt round-robin keep every worker busy.

    A segment that meets a damaged packet or an error stops there, and the rest of the file
    is decoded in this process from the keyframe of the segment before it (its frames already
    yielded are not yielded again): damaged packets are then skipped and counted, and frames
    after them decoded from the same references, exactly as `VideoFileSource` does. Should a
    segment decode to another frame count than its packets (a decoder that drops frames), the
    rest of the file is decoded in this process too, so frame indices stay those of
    `VideoFileSource`. A truncated file is told, as there, by its packets ending before the
    container's duration.
    """

    def __init__(
        self,
        path: str | Path,
        source_id: str | None = None,
        stride: int = 1,
        max_frames: int | None = None,
        workers: int | None = None,
        slots: int | None = None,
        min_frames_per_segment: int | None = None,
    ) -> None:
        self._serial = VideoFileSource(path, source_id, stride, max_frames)
        self.path = self._serial.path
        self.source_id = self._serial.source_id
        self.stride = self._serial.stride
        self.max_frames = max_frames
        self.workers = max(1, workers if workers is not None else decode_workers_for())
        frame_bytes = max(1, self.info.width * self.info.height * 3)
        buffered = SEGMENT_BUFFER_BYTES // (self.workers * frame_bytes)
        self.slots = max(1, slots) if slots else max(MIN_SLOTS, min(MAX_SLOTS, buffered))
        self.min_frames_per_segment = min_frames_per_segment or self.slots * self.stride
        self.stopped_early: str | None = None
        self.frames_decoded = 0
        self._damage = PacketDamage()
        self._packets_end_s: float | None = None
        self._pool: _WorkerPool | None = None

    @property
    def info(self) -> VideoInfo:
        """What the container says about its video stream."""
        return self._serial.info

    @property
    def expected_frames(self) -> int | None:
        """Frames this source will yield with its stride, when the container says."""
        return self._serial.expected_frames

    @property
    def damage(self) -> PacketDamage:
        """Packets skipped so far because they were damaged."""
        return self._damage

    def frame_interval_s(self) -> float:
        """Seconds between processed frames."""
        return self._serial.frame_interval_s()

    def __iter__(self) -> Iterator[Frame]:
        limit = self.max_frames * self.stride if self.max_frames is not None else None
        segments = self._plan(limit)
        if len(segments) < 2:
            yield from self._decode_serially()
            return
        self._serial.close()
        resume_at = yield from self._decode_in_workers(segments, limit)
        if resume_at is not None:
            yield from self._decode_here(resume_at, limit)
        reached_limit = limit is not None and self.frames_decoded >= limit
        if self.stopped_early is None and not reached_limit:
            self.stopped_early = truncation(self.info, self.frames_decoded, self._packets_end_s)

    def close(self) -> None:
        """Stop the worker processes, free their shared memory and release the container."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._serial.close()

    def _plan(self, limit: int | None) -> list[Segment]:
        """The segments to decode (those before `limit`), none when the workers cannot split this file."""
        if self.workers < 2 or not (self.info.width and self.info.height):
            return []
        planned = plan_segments(self.path, None, self.min_frames_per_segment)
        return [segment for segment in planned if limit is None or segment.first_index < limit]

    def _decode_serially(self) -> Iterator[Frame]:
        for frame in self._serial:
            self.frames_decoded = self._serial.frames_decoded
            yield frame
        self.frames_decoded = self._serial.frames_decoded
        self.stopped_early = self._serial.stopped_early
        self._damage = self._serial.damage

    def _decode_in_workers(self, segments: list[Segment], limit: int | None) -> Generator[Frame, None, Segment | None]:
        """Yield the segments' frames from the workers; returns where to resume in this process, if anywhere."""
        workers = min(self.workers, len(segments))
        job = _WorkerJob(
            str(self.path), (), "", self.slots, self.info.width, self.info.height, self.stride, limit, os.getpid()
        )
        self._pool = pool = _WorkerPool(job, segments, workers, self.source_id)
        try:
            for number, segment in enumerate(segments):
                while isinstance(item := pool.receive(number), Frame):
                    self.frames_decoded = item.index + 1
                    yield item
                end = item
                if end is None:
                    self.stopped_early = (
                        f"segment decoder process exited with code {pool.exit_code(number)} "
                        f"in segment {number + 1} of {len(segments)}"
                    )
                    return None
                self.frames_decoded = segment.first_index + end.frames
                self._packets_end_s = end.packets_end_s
                if end.error is not None or end.damaged:
                    earlier = segments[number - 1] if number else Segment(None, None, 0, 0)
                    return Segment(earlier.start_pts, None, earlier.first_index, 0)
                if limit is not None and self.frames_decoded >= limit:
                    return None
                if end.frames != segment.frames and number + 1 < len(segments):
                    return Segment(segments[number + 1].start_pts, None, self.frames_decoded, 0)
            return None
        finally:
            pool.close()
            self._pool = None

    def _decode_here(self, segment: Segment, limit: int | None) -> Iterator[Frame]:
        """Decode from `segment`'s keyframe to the end of the file in this process; the frames
        yielded already (those before `frames_decoded`) are decoded again but not yielded."""
        yielded = self.frames_decoded
        decoder = _SegmentDecoder(segment, self.stride, limit)
        try:
            with _open(str(self.path)) as container:
                for index, pts, decoded in decoder.emitted(container):
                    self.frames_decoded = max(yielded, segment.first_index + decoder.frames)
                    if index < yielded:
                        continue
                    image = rotate_for_display(decoded.to_ndarray(format="bgr24"), decoded.rotation)
                    yield Frame(self.source_id, index, pts, time.time(), image)
        except (av.error.FFmpegError, OSError, _SegmentError) as exc:
            self.stopped_early = self._stopped_at(decoder.last_pts, _describe(exc))
        self.frames_decoded = max(yielded, segment.first_index + decoder.frames)
        self._damage = decoder.damage
        self._packets_end_s = decoder.packets_end_s

    def _stopped_at(self, last_pts: float, reason: str) -> str:
        duration = self.info.duration
        return (
            f"decoding stopped at frame {self.frames_decoded} ({last_pts:.2f}s"
            f"{f' of {duration:.2f}s' if duration else ''}): {reason}"
        )
