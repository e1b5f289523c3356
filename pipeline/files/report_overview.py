"""One picture of a run: frames of the video with every face boxed and labelled, over each person's emotion strip.

`overview.png` answers what the per-person plots cannot: who "person 3" is, and where the model
looked. The frames are fetched by seeking (a few keyframe seeks, not a decode of the whole video).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from pipeline.faces.colours import bgr

if TYPE_CHECKING:
    from pipeline.files.sources import VideoFileSource

log = logging.getLogger(__name__)

SHEET_FRAMES = 4
SHOWN_WIDTH = 320
"""Frames narrower than this are enlarged to it before boxes and labels are drawn."""
STRIP_PEOPLE = 8
"""At most this many people (the longest seen) get a strip."""


def draw_face(image: np.ndarray, face: dict, colour: tuple[int, int, int]) -> None:
    """Box, track id, emotion and score of one timeline face, drawn on a BGR image."""
    import cv2

    x1, y1, x2, y2 = (int(v) for v in face["box"])
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
    person = "" if face["id"] is None else f"#{face['id']} "
    cv2.putText(image, f"{person}{face['emotion']} {face['score']:.2f}", (x1, max(12, y1 - 5)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)


def write_overview(run_dir: Path, frames: list[dict], strips: list[tuple[int, list[float], list[str]]],
                   colours: dict[str, str], video: Path, title: str) -> Path:
    """`overview.png`: SHEET_FRAMES annotated frames of `video`, then one strip per person (id, pts, emotions)."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = _sheet_frames(frames)
    images = frames_at(video, [frame["pts"] for frame in shown])
    people = len(strips)
    strips = sorted(strips, key=lambda strip: -len(strip[1]))[:STRIP_PEOPLE]
    if people > len(strips):
        title += f" (strips: the {len(strips)} seen longest)"
    rows = max(1, len(strips))
    fig = plt.figure(figsize=(12, 3.2 + 0.35 * rows))
    grid = fig.add_gridspec(2, len(shown) or 1, height_ratios=[3.0, 0.35 * rows + 0.6], hspace=0.25)
    drawn: set[str] = set()
    for column, (frame, image) in enumerate(zip(shown, images)):
        scale = max(1.0, SHOWN_WIDTH / image.shape[1])  # small frames are enlarged so labels stay readable
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        for face in frame["faces"]:
            draw_face(image, face | {"box": [v * scale for v in face["box"]]}, bgr(colours[face["emotion"]]))
            drawn.add(face["emotion"])
        ax = fig.add_subplot(grid[0, column])
        ax.imshow(image[:, :, ::-1])
        ax.set_title(f"{frame['pts']:.2f} s", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    end = max((frame["pts"] for frame in frames), default=0.0)
    step = end / max(1, len(frames) - 1) if len(frames) > 1 else 0.04
    for row, (_person, pts, emotions) in enumerate(strips):
        for t, emotion in zip(pts, emotions):
            ax.axvspan(t, t + step, ymin=1 - (row + 0.9) / rows, ymax=1 - (row + 0.1) / rows,
                       color=colours[emotion], lw=0)
            drawn.add(emotion)
    ax.set_yticks([1 - (row + 0.5) / rows for row in range(len(strips))],
                  [f"person {track_id}" for track_id, _pts, _emotions in strips], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlim(0, end + step)
    ax.set_xlabel("time (s)")
    if not strips:
        ax.text(0.5, 0.5, "no tracked person", ha="center", va="center", transform=ax.transAxes, fontsize=9)
    used = [name for name in colours if name in drawn]
    if used:
        ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[name]) for name in used], labels=used,
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    path = run_dir / "overview.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _sheet_frames(frames: list[dict]) -> list[dict]:
    """SHEET_FRAMES timeline frames spread evenly over the frames that have faces (over all when none do)."""
    pool = [frame for frame in frames if frame["faces"]] or frames
    if len(pool) <= SHEET_FRAMES:
        return pool
    return [pool[round(i * (len(pool) - 1) / (SHEET_FRAMES - 1))] for i in range(SHEET_FRAMES)]


def frames_at(video: Path, times: list[float]) -> list[np.ndarray]:
    """The frame shown at each presentation time (seconds from the stream's start, as timelines count),
    rotation applied: found by seeking where the container allows it, else by decoding in order.

    Raises SourceError (one line) when `video` is not a readable video.
    """
    from pipeline.files.sources import VideoFileSource

    VideoFileSource(video).close()  # the same checks and one-line errors as `process`
    try:
        return _seek_frames(video, times)
    except (_SeekMissed, av.error.FFmpegError):
        return _decoded_frames(VideoFileSource(video), times)


class _SeekMissed(Exception):
    """Seeking did not land on the frame at a time (no timestamps, or the container seeks imprecisely)."""


TIME_TOLERANCE_S = 0.0006
"""Timelines keep times to the millisecond: a frame is the one within this of the time asked for."""


def _seek_frames(video: Path, times: list[float]) -> list[np.ndarray]:
    from pipeline.files.sources import rotate_for_display

    images = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        if stream.time_base is None:
            raise _SeekMissed
        for seconds in times:
            container.seek(start + int(round(seconds / stream.time_base)), stream=stream, backward=True,
                           any_frame=False)
            found = None
            for decoded in container.decode(stream):
                if decoded.pts is None:
                    raise _SeekMissed
                at = float((decoded.pts - start) * stream.time_base)
                if found is None and at > seconds + TIME_TOLERANCE_S:
                    raise _SeekMissed  # landed past the frame: never draw one frame's faces on another
                if abs(at - seconds) <= TIME_TOLERANCE_S:
                    found = rotate_for_display(decoded.to_ndarray(format="bgr24"), decoded.rotation)
                    break
            if found is None:
                raise _SeekMissed
            images.append(found)
    return images


def _decoded_frames(source: VideoFileSource, times: list[float]) -> list[np.ndarray]:
    images: list[np.ndarray | None] = [None] * len(times)
    for frame in source:
        for index, seconds in enumerate(times):
            if images[index] is None and abs(frame.pts - seconds) <= TIME_TOLERANCE_S:
                images[index] = frame.image
        if all(image is not None for image in images):
            source.close()
            break
    missing = sum(image is None for image in images)
    if missing:
        log.warning("overview: %d of %d frames not found in %s (is it the run's video?); shown black",
                    missing, len(times), source.path)
    return [image if image is not None else np.zeros((2, 2, 3), np.uint8) for image in images]
