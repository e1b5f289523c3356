"""How well a timeline (faces per frame) matches a scripted video's ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from training.scenes import Box
from training.synthetic_video import FaceTruth


@dataclass(frozen=True)
class Agreement:
    """Counts over scripted face-frames: found at IoU >= 0.5, and found with the scripted emotion."""

    face_frames: int
    detected: int
    correct: int
    false_faces: int

    @property
    def detection_rate(self) -> float:
        """Share of scripted face-frames the timeline found."""
        return self.detected / self.face_frames if self.face_frames else 0.0

    @property
    def accuracy(self) -> float:
        """Share of scripted face-frames found with the scripted emotion."""
        return self.correct / self.face_frames if self.face_frames else 0.0

    def format(self) -> str:
        """One line for people."""
        return (
            f"script agreement: {self.correct}/{self.face_frames} face-frames with the scripted emotion "
            f"({self.accuracy:.1%}); found {self.detection_rate:.1%} at IoU>=0.5; {self.false_faces} extra faces"
        )


def score_timeline(
    truth: Sequence[Sequence[FaceTruth]],
    timeline: Sequence[Sequence[tuple[Box, str]]],
    min_iou: float = 0.5,
) -> Agreement:
    """Match each frame's detected (box, emotion) pairs to its scripted faces, greedily by IoU."""
    face_frames = detected = correct = false_faces = 0
    for expected, found in zip(truth, timeline):
        face_frames += len(expected)
        unmatched = list(found)
        for face in expected:
            best = max(unmatched, key=lambda item: iou(face.box, item[0]), default=None)
            if best is None or iou(face.box, best[0]) < min_iou:
                continue
            unmatched.remove(best)
            detected += 1
            correct += best[1] == face.expression
        false_faces += len(unmatched)
    face_frames += sum(len(expected) for expected in truth[len(timeline) :])
    return Agreement(face_frames, detected, correct, false_faces)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
