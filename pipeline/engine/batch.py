"""The array result of a batch, in the manner of supervision's `Detections`.

One `Detections` holds every face of a batch of frames as parallel arrays; frame `i`
owns rows `offsets[i]:offsets[i + 1]`. Tracking fills `tracker_id`, events read the
arrays, and JSON is made only inside the sinks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # an optional extra: imported when asked for
    import supervision

UNTRACKED = -1
"""`tracker_id` of a face that no track holds."""


@dataclass(frozen=True)
class FrameInfo:
    """What the results need to know of one processed frame (never its pixels)."""

    source_id: str
    index: int
    pts: float
    """Presentation time in seconds from the start of the source."""
    wall_time: float
    """Unix time (seconds) at which the frame was received from the decoder."""
    width: int
    height: int


@dataclass
class Detections:
    """Faces of a batch of frames as arrays; rows of frame `i` are `offsets[i]:offsets[i+1]`."""

    frames: list[FrameInfo]
    offsets: np.ndarray
    """int64 [frames + 1], starting at 0."""
    xyxy: np.ndarray
    """float32 [faces, 4]: x1, y1, x2, y2 in source pixels."""
    confidence: np.ndarray
    """float32 [faces]: the score of the leading class."""
    class_id: np.ndarray
    """int64 [faces]: index of the leading class in the model's names."""
    scores: np.ndarray
    """float32 [faces, classes]: every class's score."""
    tracker_id: np.ndarray
    """int64 [faces]: track id per source, UNTRACKED where none."""

    @classmethod
    def empty(cls, frames: list[FrameInfo], classes: int) -> Detections:
        """No face in any of `frames`."""
        return cls(
            list(frames),
            np.zeros(len(frames) + 1, np.int64),
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            np.zeros((0, classes), np.float32),
            np.zeros(0, np.int64),
        )

    @classmethod
    def from_rows(cls, frames: list[FrameInfo], counts: np.ndarray, rows: np.ndarray, classes: int) -> Detections:
        """Build from one host array `rows` [faces, 6 + classes] (x1 y1 x2 y2 conf cls scores...) and per-frame counts."""
        offsets = np.zeros(len(frames) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            list(frames),
            offsets,
            np.ascontiguousarray(rows[:, :4], np.float32),
            np.ascontiguousarray(rows[:, 4], np.float32),
            rows[:, 5].astype(np.int64),
            np.ascontiguousarray(rows[:, 6 : 6 + classes], np.float32),
            np.full(len(rows), UNTRACKED, np.int64),
        )

    def to_supervision(self, names: list[str] | None = None) -> supervision.Detections:
        """The faces as a `supervision.Detections`, for its annotators, trackers and zones (the `supervision`
        extra: `pip install 'emotion-stream[supervision]'`).

        `xyxy`, `confidence` and `class_id` as here; `tracker_id` where any face is tracked (UNTRACKED, -1,
        for the faces no track holds), else None; `data["scores"]` every class's score [faces, classes] and
        `data["frame"]` the position in this batch of each face's frame (`select([i])` first for one frame's
        faces alone). With the model's class `names` (`EmotionDetector.names`), `data["class_name"]` too,
        which supervision's label annotator shows.
        """
        try:
            import supervision
        except ImportError as exc:
            raise ImportError("Detections.to_supervision() needs the supervision package: "
                              "pip install 'emotion-stream[supervision]'") from exc
        data: dict[str, np.ndarray] = {
            "scores": self.scores.copy(),
            "frame": np.repeat(np.arange(len(self.frames), dtype=np.int64), self.face_counts()),
        }
        if names is not None:
            if len(names) != self.scores.shape[1]:
                raise ValueError(f"{len(names)} class names given for a model of {self.scores.shape[1]} classes")
            data["class_name"] = np.array(names, dtype=str)[self.class_id]
        tracked = bool((self.tracker_id != UNTRACKED).any())
        return supervision.Detections(
            xyxy=self.xyxy.copy(),
            confidence=self.confidence.copy(),
            class_id=self.class_id.copy(),
            tracker_id=self.tracker_id.copy() if tracked else None,
            data=data,
        )

    def __len__(self) -> int:
        """Number of faces in the batch."""
        return len(self.confidence)

    def rows(self, frame: int) -> slice:
        """The rows of frame number `frame` of this batch."""
        return slice(int(self.offsets[frame]), int(self.offsets[frame + 1]))

    def face_counts(self) -> np.ndarray:
        """Faces per frame."""
        return np.diff(self.offsets)

    def select(self, frames: list[int]) -> Detections:
        """A new `Detections` of the given frames (by position in this batch), in that order."""
        counts = self.face_counts()[frames] if frames else np.zeros(0, np.int64)
        picked = (np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in frames])
                  if frames else np.zeros(0, np.int64))
        offsets = np.zeros(len(frames) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return Detections(
            [self.frames[i] for i in frames],
            offsets,
            self.xyxy[picked],
            self.confidence[picked],
            self.class_id[picked],
            self.scores[picked],
            self.tracker_id[picked],
        )
