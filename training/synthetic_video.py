"""Scripted synthetic videos: moving FER-format faces whose expressions follow a known script.

The script is the ground truth the demo and the tests score the pipeline's timeline against.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from training.scenes import Box, paste_face, random_background
from training.synthetic_faces import FER_CLASSES, FaceIdentity, draw_face


@dataclass(frozen=True)
class ScriptedFace:
    """One person: moves linearly from `start` to `end` (fractions of the frame) and changes expression.

    `segments` lists (start time in seconds, expression); each lasts until the next one.
    """

    seed: int
    start: tuple[float, float]
    end: tuple[float, float]
    size: float
    """Face side as a fraction of the frame height."""
    segments: tuple[tuple[float, str], ...]

    def expression_at(self, t: float) -> str:
        """The scripted expression at time `t`."""
        current = self.segments[0][1]
        for start, expression in self.segments:
            if t + 1e-9 >= start:
                current = expression
        return current


@dataclass(frozen=True)
class FaceTruth:
    """Where a scripted face is in one frame and what it shows."""

    track: int
    box: Box
    expression: str


def default_script(duration_s: float = 10.0, step_s: float = 1.0) -> list[ScriptedFace]:
    """Two people cycling through all seven expressions, out of phase, moving across the frame."""
    steps = int(duration_s / step_s)
    first = tuple((i * step_s, FER_CLASSES[i % 7]) for i in range(steps))
    second = tuple((i * step_s, FER_CLASSES[(i + 3) % 7]) for i in range(steps))
    return [
        ScriptedFace(seed=11, start=(0.05, 0.12), end=(0.32, 0.30), size=0.42, segments=first),
        ScriptedFace(seed=23, start=(0.78, 0.45), end=(0.64, 0.15), size=0.34, segments=second),
    ]


FLASH_MAX_S = 0.5


def micro_expression_script(duration_s: float = 12.0, fps: int = 30) -> list[ScriptedFace]:
    """Two people with steady stretches, scripted changes, and planted 2-4 frame flashes."""
    frame = 1.0 / fps
    first = ((0.0, "neutral"), (2.0, "surprise"), (2.0 + 3 * frame, "neutral"), (4.0, "happy"),
             (6.0, "angry"), (6.0 + 2 * frame, "happy"), (8.0, "surprise"), (10.0, "happy"),
             (10.0 + 4 * frame, "surprise"))
    second = ((0.0, "surprise"), (3.0, "happy"), (3.0 + 3 * frame, "surprise"), (5.0, "neutral"),
              (7.0, "surprise"), (7.0 + 3 * frame, "neutral"), (9.0, "happy"))
    return [
        ScriptedFace(seed=11, start=(0.06, 0.15), end=(0.20, 0.25), size=0.42, segments=first),
        ScriptedFace(seed=23, start=(0.76, 0.40), end=(0.62, 0.20), size=0.36, segments=second),
    ]


def scripted_flashes(script: list[ScriptedFace], duration_s: float) -> list[tuple[int, float, float, str]]:
    """(track, onset, end, expression) of every segment shorter than FLASH_MAX_S that returns."""
    flashes = []
    for track, face in enumerate(script):
        bounds = [start for start, _ in face.segments] + [duration_s]
        for (start, expression), end in zip(face.segments, bounds[1:]):
            if end - start < FLASH_MAX_S and start > 0:
                flashes.append((track, start, end, expression))
    return flashes


def scripted_changes(script: list[ScriptedFace], duration_s: float) -> list[tuple[int, float, str, str]]:
    """(track, time, from, to) of the lasting expression changes (flashes excluded)."""
    changes = []
    flash_starts = {(t, start) for t, start, _end, _e in scripted_flashes(script, duration_s)}
    for track, face in enumerate(script):
        lasting = [(start, e) for start, e in face.segments if (track, start) not in flash_starts]
        for (_start, before), (start, after) in zip(lasting, lasting[1:]):
            if before != after:
                changes.append((track, start, before, after))
    return changes


def render_scripted_video(
    path: str | Path,
    script: list[ScriptedFace],
    duration_s: float = 10.0,
    fps: int = 15,
    size: tuple[int, int] = (480, 270),
    seed: int = 0,
) -> list[list[FaceTruth]]:
    """Encode the script as H.264 MP4 at `path`; return and save (`<path>.truth.json`) the truth."""
    width, height = size
    rng = np.random.default_rng(seed)
    background = random_background(height, width, rng)
    identities = [FaceIdentity.sample(np.random.default_rng(face.seed)) for face in script]
    truth: list[list[FaceTruth]] = []
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(int(round(duration_s * fps))):
            t = index / fps
            canvas = background.copy()
            frame_truth = []
            for track, (face, identity) in enumerate(zip(script, identities)):
                progress = t / duration_s
                x = (face.start[0] + (face.end[0] - face.start[0]) * progress) * width
                y = (face.start[1] + (face.end[1] - face.start[1]) * progress) * height
                side = int(face.size * height)
                expression = face.expression_at(t)
                drawn = draw_face(expression, identity, rng, jitter=0.3)
                box = paste_face(canvas, drawn, identity, int(x), int(y), side)
                frame_truth.append(FaceTruth(track, box, expression))
            truth.append(frame_truth)
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    Path(f"{path}.truth.json").write_text(json.dumps([[asdict(f) for f in frame] for frame in truth]))
    return truth


def load_truth(path: str | Path) -> list[list[FaceTruth]]:
    """Read the truth saved next to a rendered video."""
    raw = json.loads(Path(f"{path}.truth.json").read_text())
    return [[FaceTruth(f["track"], tuple(f["box"]), f["expression"]) for f in frame] for frame in raw]
