"""Real video files for tests, encoded with PyAV."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np


def gradient_frames(count: int, width: int = 160, height: int = 96) -> list[np.ndarray]:
    """BGR frames whose content encodes the frame index (a moving bar) and orientation (a corner mark)."""
    frames = []
    for index in range(count):
        image = np.full((height, width, 3), 60, np.uint8)
        x = (index * 7) % (width - 10)
        image[:, x : x + 10] = (200, 200, 200)
        image[:12, :12] = (0, 0, 255)  # red top-left mark shows orientation
        frames.append(image)
    return frames


def index_image(index: int, width: int = 160, height: int = 96) -> np.ndarray:
    """A gray BGR image with the bits of `index` drawn as bright 16x16 blocks (two rows of five)."""
    image = np.full((height, width, 3), 80, np.uint8)
    for bit in range(10):
        if index >> bit & 1:
            y, x = 8 + 24 * (bit // 5), 8 + 24 * (bit % 5)
            image[y : y + 16, x : x + 16] = 230
    return image


def read_index(image: np.ndarray) -> int:
    """The index `index_image` drew, read back from a decoded (unrotated) frame."""
    return sum(1 << bit for bit in range(10) if image[16 + 24 * (bit // 5), 16 + 24 * (bit % 5)].mean() > 155)


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int = 25,
    codec: str = "libx264",
    rotation: int | None = None,
    faststart: bool = False,
    codec_options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode BGR `frames` to `path`; `rotation` sets the display matrix (degrees counter-clockwise).

    `faststart` puts an MP4's index first, as streaming-ready files have it; `codec_options`
    go to the encoder (e.g. `{"x264-params": "keyint=24"}`); `pix_fmt` yuv444p allows odd sizes.
    """
    height, width = frames[0].shape[:2]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=fps, options=codec_options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def truncate(path: Path, keep_fraction: float) -> Path:
    """Cut a file to its first `keep_fraction` of bytes, as an interrupted copy would."""
    data = path.read_bytes()
    out = path.with_name(f"truncated-{path.name}")
    out.write_bytes(data[: int(len(data) * keep_fraction)])
    return out


def variable_frame_rate(source: Path, target: Path) -> Path:
    """`source` with frames 20 to 100 cut out and the rest kept at their times (FFmpeg's command line, VFR)."""
    subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", "-i", str(source),
                    "-vf", "select='not(between(n,20,100))'", "-fps_mode", "vfr", str(target)], check=True)
    return target


def ffprobe_decoded_frames(path: Path) -> int:
    """Frames FFmpeg's own ffprobe decodes from `path` (damaged packets skipped)."""
    out = subprocess.run([shutil.which("ffprobe") or "ffprobe", "-v", "quiet", "-count_frames", "-select_streams",
                          "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().strip(","))
