"""The closing summary of a run: frames, faces and the share of time per emotion."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.engine.batch import Detections
from pipeline.faces.events import FaceEvent


@dataclass
class TimelineSummary:
    """Counts accumulated over a run's results."""

    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    emotions: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    last_pts: float = 0.0
    damaged_packets: int = 0
    """Damaged packets of the source: skipped (their frames lost) or decoded with the damage concealed."""

    def add(self, detections: Detections | None, names: list[str], events: list[FaceEvent] | None = None) -> None:
        """Count one batch of a source's frames and its events."""
        self.events.update(event.type for event in events or [])
        if detections is None or not detections.frames:
            return
        self.frames += len(detections.frames)
        self.faces += len(detections)
        self.frames_with_faces += int(np.count_nonzero(detections.face_counts()))
        for class_id, count in zip(*np.unique(detections.class_id, return_counts=True)):
            self.emotions[names[class_id]] += int(count)
        self.last_pts = max(self.last_pts, max(frame.pts for frame in detections.frames))

    def shares(self) -> dict[str, float]:
        """Share of face-time per emotion (each face in each frame counts once), largest first."""
        total = sum(self.emotions.values())
        return {name: count / total for name, count in self.emotions.most_common()} if total else {}

    def to_json(self) -> dict:
        """The summary as a JSON-ready dict."""
        return {
            "frames": self.frames,
            "frames_with_faces": self.frames_with_faces,
            "faces": self.faces,
            "duration_s": round(self.last_pts, 3),
            "emotion_share": {name: round(share, 4) for name, share in self.shares().items()},
            "events": dict(self.events),
            "damaged_packets": self.damaged_packets,
        }

    def format(self) -> str:
        """A short human-readable table."""
        lines = [
            f"frames {self.frames}  ({self.frames_with_faces} with faces)  faces {self.faces}  "
            f"video time {self.last_pts:.1f}s"
            + (f"  damaged packets {self.damaged_packets}" if self.damaged_packets else "")
        ]
        for name, share in self.shares().items():
            lines.append(f"  {name:<9} {share * 100:5.1f}%  {'#' * round(share * 40)}")
        if self.events:
            lines.append("events: " + ", ".join(f"{kind} {count}" for kind, count in sorted(self.events.items())))
        return "\n".join(lines)
