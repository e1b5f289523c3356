"""Per-face views of a `Detections`, for tests that compare faces one by one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.engine.detector import EmotionDetector


@dataclass(frozen=True)
class FaceView:
    """One row of a `Detections`."""

    box: tuple[float, float, float, float]
    emotion: str
    score: float
    scores: dict[str, float]


def faces_of(detector: EmotionDetector, images: list[np.ndarray]) -> list[list[FaceView]]:
    """The faces of each image, as `detector.detect` finds them in one batch."""
    detections = detector.detect(images)
    per_frame = []
    for frame in range(len(images)):
        rows = detections.rows(frame)
        per_frame.append([
            FaceView(tuple(float(v) for v in detections.xyxy[row]), detector.names[int(detections.class_id[row])],
                     float(detections.confidence[row]), dict(zip(detector.names, detections.scores[row].tolist())))
            for row in range(rows.start, rows.stop)
        ])
    return per_frame
