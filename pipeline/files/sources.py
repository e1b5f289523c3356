"""Video-file source on PyAV: any container and codec FFmpeg reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline.core.errors import SourceError
from pipeline.core.source_ids import check_source_id, source_id_for
from pipeline.core.types import Frame
from pipeline.core.uris import video_path


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its video stream."""

    width: int
    height: int
    fps: float
    duration: float | None
    frame_count: int | None
    codec: str


class VideoFileSource:
    """Decodes a video file into `Frame`s, in presentation order, rotation applied.

    Decoding stops cleanly at the first undecodable packet of a damaged file; `stopped_early`
    then says where, and the frames before it are still delivered.
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
        self._stream.thread_type = "AUTO"
        self.info = self._read_info()

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
        return container

    def _read_info(self) -> VideoInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            duration = self._container.duration / av.time_base
        frame_count = stream.frames or (round(duration * fps) if duration and fps else None)
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            duration=duration,
            frame_count=frame_count or None,
            codec=stream.codec_context.name,
        )

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
        try:
            for packet in self._container.demux(self._stream):
                for decoded in packet.decode():
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
        if self.stopped_early is None and self.info.frame_count and self.frames_decoded < 0.95 * self.info.frame_count:
            self.stopped_early = (
                f"video ended at frame {self.frames_decoded} ({last_pts:.2f}s) "
                f"but the container announces {self.info.frame_count} frames: the file looks truncated"
            )

    def close(self) -> None:
        """Release the container (iteration closes it too)."""
        self._container.close()


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
