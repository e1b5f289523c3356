"""Stable face ids per source with ultralytics' ByteTrack, fed from the batched detector."""

from __future__ import annotations

import dataclasses
from argparse import Namespace

import numpy as np
from ultralytics.trackers.byte_tracker import BYTETracker

from pipeline.config import TrackerSettings
from pipeline.types import Face


class _Detections:
    """The Results-like view ByteTrack reads: conf, cls, xywh, xyxy, boolean indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = np.column_stack(((xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                                     xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])) if len(xyxy) else xyxy

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: np.ndarray) -> _Detections:
        return _Detections(self.xyxy[index], self.conf[index], self.cls[index])


class FaceTracker:
    """ByteTrack for one source: `update` returns the frame's faces with `track_id` set.

    Only faces scoring at least `track_high_thresh` are associated (so ByteTrack's detection
    indices map back unambiguously); others keep `track_id=None`.
    """

    def __init__(self, settings: TrackerSettings | None = None, class_names: list[str] | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.class_names = class_names or []
        self._tracker = BYTETracker(Namespace(**dataclasses.asdict(self.settings)))  # extra keys are ignored

    def update(self, faces: list[Face]) -> list[Face]:
        """Associate this frame's faces with tracks (call once per frame, in order, faces or not)."""
        eligible = [i for i, face in enumerate(faces) if face.score >= self.settings.track_high_thresh]
        detections = _Detections(
            np.asarray([faces[i].box for i in eligible], np.float32).reshape(-1, 4),
            np.asarray([faces[i].score for i in eligible], np.float32),
            np.asarray([self._class_index(faces[i].emotion) for i in eligible], np.float32),
        )
        tracks = self._tracker.update(detections)
        ids: dict[int, int] = {eligible[int(row[7])]: int(row[4]) for row in tracks} if len(tracks) else {}
        return [dataclasses.replace(face, track_id=ids.get(i)) for i, face in enumerate(faces)]

    def _class_index(self, name: str) -> int:
        return self.class_names.index(name) if name in self.class_names else 0
