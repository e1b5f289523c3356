"""Stable face ids per source with ultralytics' ByteTrack, fed from the batched detector."""

from __future__ import annotations

import dataclasses
from argparse import Namespace

import numpy as np
from ultralytics.trackers.byte_tracker import BYTETracker

from pipeline.core.config import TrackerSettings
from pipeline.engine.batch import UNTRACKED


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
    """ByteTrack for one source: `update` gives the track id of each face of a frame.

    Only faces scoring at least `track_high_thresh` are associated (so ByteTrack's detection
    indices map back unambiguously); others stay UNTRACKED.
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._tracker = BYTETracker(Namespace(**dataclasses.asdict(self.settings)))  # extra keys are ignored

    def update(self, xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray) -> np.ndarray:
        """Track ids for one frame's faces (call once per frame, in order, faces or not)."""
        ids = np.full(len(confidence), UNTRACKED, np.int64)
        eligible = np.flatnonzero(confidence >= self.settings.track_high_thresh)
        detections = _Detections(xyxy[eligible].astype(np.float32).reshape(-1, 4),
                                 confidence[eligible].astype(np.float32), class_id[eligible].astype(np.float32))
        tracks = self._tracker.update(detections)
        if len(tracks):
            ids[eligible[tracks[:, 7].astype(np.int64)]] = tracks[:, 4].astype(np.int64)
        return ids
