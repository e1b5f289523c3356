"""Emotion detectors built from ultralytics architecture files, no pretrained download."""

from __future__ import annotations

from pathlib import Path

from training.synthetic_faces import FER_CLASSES


def untrained_detector(path: str | Path, architecture: str = "yolov8m.yaml", names: tuple[str, ...] = FER_CLASSES) -> Path:
    """Save a randomly initialised `architecture` with one class per emotion to `path` (.pt)."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    model = YOLO(architecture)
    model.model = DetectionModel(architecture, nc=len(names), verbose=False)
    model.model.names = dict(enumerate(names))
    model.model.args = {"imgsz": 640, "task": "detect"}
    model.save(str(path))
    return Path(path)
