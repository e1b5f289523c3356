"""Video-file source on PyAV: any container and codec FFmpeg reads."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline.core.errors import SourceError
from pipeline.core.source_ids import check_source_id, source_id_for
from pipeline.core.types import Frame
from pipeline.core.uris import video_path

TRUNCATION_SLACK_S = 0.25
TRUNCATION_SLACK_FRAMES = 3
"""A file whose packets end more than this (seconds, or frame intervals if longer) before its duration is truncated."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its video stream."""

    width: int
    height: int
    fps: float
    duration: float | None
    frame_count: int | None
    codec: str


@dataclass
class PacketDamage:
    """Damaged packets of a stream: rejected by the decoder (`skipped`, as FFmpeg skips them: their
    frames are lost) or decoded with the damage concealed (`concealed`: frames the decoder flagged corrupt)."""

    skipped: int = 0
    concealed: int = 0
    first_at_s: float | None = None
    """Time of the first damaged packet (seconds from the start), when it has one."""
    first_error: str = ""

    @property
    def packets(self) -> int:
        """Damaged packets in all."""
        return self.skipped + self.concealed

    def add(self, at_s: float | None, error: str, skipped: bool) -> None:
        """Count one damaged packet."""
        if not self.packets:
            self.first_at_s, self.first_error = at_s, error
        self.skipped += skipped
        self.concealed += not skipped

    def describe(self) -> str:
        """One line for the user, e.g. `3 damaged packets: 2 skipped, 1 concealed (the first at 2.40s: ...)`."""
        where = f"at {self.first_at_s:.2f}s: " if self.first_at_s is not None else ""
        plural = "s" if self.packets > 1 else ""
        return (f"{self.packets} damaged packet{plural}: {self.skipped} skipped, {self.concealed} decoded with "
                f"the damage concealed (the first {where}{self.first_error})")


class PacketDecoder:
    """Decodes a video stream's packets as FFmpeg does: a packet the decoder rejects is skipped and
    counted in `damage`, and decoding goes on with the next; frames the decoder flags corrupt are
    delivered and counted. It also notes how far in time the packets reach (`packets_end_s`),
    which tells a truncated file."""

    def __init__(self, stream: av.VideoStream, count_from_pts: int | None = None) -> None:
        """Damage is counted only from pts `count_from_pts` on (all when None)."""
        self.stream = stream
        self.count_from_pts = count_from_pts
        self.damage = PacketDamage()
        self.packets = 0
        self.packets_end_s: float | None = None
        """End (pts + duration, seconds from the stream's start) of the latest packet read; None without timestamps."""
        self._start = stream.start_time or 0

    def frames(self, packets: Iterable[av.Packet]) -> Iterator[av.VideoFrame]:
        """The decoded frames of `packets`; a demuxing error is raised (the file ends there)."""
        for packet in packets:
            if packet.size:
                self._note(packet)
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                self._damaged(packet.pts, _describe(exc), skipped=True)
                continue
            for frame in decoded:
                if frame.is_corrupt:
                    self._damaged(frame.pts, "decoded with errors", skipped=False)
                yield frame

    def _damaged(self, pts: int | None, error: str, skipped: bool) -> None:
        if self.count_from_pts is None or pts is None or pts >= self.count_from_pts:
            self.damage.add(self._seconds(pts), error, skipped)

    def _note(self, packet: av.Packet) -> None:
        self.packets += 1
        stamp = packet.pts if packet.pts is not None else packet.dts
        end = self._seconds(stamp + (packet.duration or 0)) if stamp is not None else None
        if end is not None and (self.packets_end_s is None or end > self.packets_end_s):
            self.packets_end_s = end

    def _seconds(self, pts: int | None) -> float | None:
        time_base = self.stream.time_base
        return float((pts - self._start) * time_base) if pts is not None and time_base is not None else None


def truncation(info: VideoInfo, frames: int, packets_end_s: float | None) -> str | None:
    """Why a file whose packets all demuxed looks cut short, or None.

    A file is truncated when its packets end well before the duration its container announces:
    time, not a frame count, which a variable-frame-rate file does not match (duration x rate).
    Files without a duration or without timestamps (`packets_end_s` None) cannot tell.
    """
    duration = info.duration
    if not duration:
        return None
    slack = max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRAMES / info.fps if info.fps else 0.0)
    if packets_end_s is None or packets_end_s >= duration - slack:
        return None
    return (f"video ended at frame {frames} ({packets_end_s:.2f}s) but the container says it lasts "
            f"{duration:.2f}s: the file looks truncated")


class VideoFileSource:
    """Decodes a video file into `Frame`s, in presentation order, rotation applied.

    A damaged packet is skipped as FFmpeg skips it and counted in `damage`; the frames before
    and after it are delivered. Decoding stops at a demuxing error or the end of the packets;
    `stopped_early` then says where when the file is cut short (its packets end before the
    duration the container announces).
    """

    def __init__(
        self, path: str | Path, source_id: str | None = None, stride: int = 1, max_frames: int | None = None
    ) -> None:
        self.path = video_path(path)
        self.source_id = check_source_id(source_id) if source_id is not None else source_id_for(self.path)
        self.stride = max(1, int(stride))
        self.max_frames = max_frames
        self.stopped_early: str | None = None
        self.frames_decoded = 0
        self._container = self._open()
        self._stream = self._container.streams.video[0]
        decode_on_one_thread(self._stream)
        self.info = video_info(self._container, self._stream)
        self._decoder = PacketDecoder(self._stream)

    def _open(self) -> av.container.InputContainer:
        if not self.path.exists():
            raise SourceError(f"video not found: {self.path}")
        if not self.path.is_file():
            raise SourceError(f"not a file: {self.path}")
        try:
            container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            hint = ""
            if self.path.suffix.lower() in {".mp4", ".mov", ".m4v"} and _lacks_mp4_index(self.path):
                hint = "; its MP4 index (moov) is missing: was the file cut short while recording or copying?"
            raise SourceError(f"not a readable video: {self.path} ({_describe(exc)}{hint})") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"no video stream in {self.path}")
        if container.streams.video[0].codec_context is None:
            container.close()
            raise SourceError(f"not a readable video: {self.path} (its video codec is unknown: is the file damaged?)")
        return container

    @property
    def expected_frames(self) -> int | None:
        """Frames this source will yield with its stride, when the container says."""
        if self.info.frame_count is None:
            return self.max_frames
        expected = -(-self.info.frame_count // self.stride)
        return min(expected, self.max_frames) if self.max_frames else expected

    def frame_interval_s(self) -> float:
        """Seconds between processed frames (stride over the frame rate; 30 fps when unknown)."""
        return self.stride / (self.info.fps or 30.0)

    def __iter__(self) -> Iterator[Frame]:
        start = self._stream.start_time or 0
        time_base = self._stream.time_base
        index = -1
        last_pts = 0.0
        decoder = self._decoder
        try:
            for decoded in decoder.frames(self._container.demux(self._stream)):
                index += 1
                if decoded.pts is not None and time_base is not None:
                    last_pts = float((decoded.pts - start) * time_base)
                elif self.info.fps:
                    last_pts = index / self.info.fps
                self.frames_decoded = index + 1
                if index % self.stride:
                    continue
                if self.max_frames is not None and index // self.stride >= self.max_frames:
                    return
                image = rotate_for_display(decoded.to_ndarray(format="bgr24"), decoded.rotation)
                yield Frame(self.source_id, index, last_pts, time.time(), image)
        except av.error.FFmpegError as exc:
            self.stopped_early = (
                f"decoding stopped at frame {index + 1} ({last_pts:.2f}s"
                f"{f' of {self.info.duration:.2f}s' if self.info.duration else ''}): {_describe(exc)}"
            )
        finally:
            self._container.close()
        if self.stopped_early is None:
            self.stopped_early = truncation(self.info, self.frames_decoded, decoder.packets_end_s if decoder.packets else 0.0)

    @property
    def damage(self) -> PacketDamage:
        """Packets skipped so far because they were damaged."""
        return self._decoder.damage

    def close(self) -> None:
        """Release the container (iteration closes it too)."""
        self._container.close()


def video_info(container: av.container.InputContainer, stream: av.VideoStream) -> VideoInfo:
    """What `container` says about its video `stream`: size, rate, duration and frame count (when it says)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    frame_count = stream.frames or (round(duration * fps) if duration and fps else None)
    return VideoInfo(
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=fps,
        duration=duration,
        frame_count=frame_count or None,
        codec=stream.codec_context.name,
    )


def decode_on_one_thread(stream: av.VideoStream) -> None:
    """Decode `stream` on one thread. PyAV's frame-threaded decoding loses good frames next to a damaged
    packet (FFmpeg's own keeps them), and how damage is concealed depends on the thread count; long
    files get their parallelism from segment processes instead."""
    stream.thread_count = 1


def rotate_for_display(image: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise) as FFmpeg's autorotate does."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns)) if quarter_turns else image


def _lacks_mp4_index(path: Path) -> bool:
    """True for an MP4/MOV file that starts like one but has no moov box (a truncated recording)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if head[4:8] != b"ftyp":
            return False
        handle.seek(0)
        return b"moov" not in handle.read()


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split("\n")[0]
