"""A tiny emotion detector trained in minutes on synthetic scenes, for the demo and the tests.

Trained once per settings and cached, so the demo and the test suite share it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from exporters.cache import cache_root
from training.progress import TrainingProgress
from training.scenes import write_scene_dataset

GENERATOR_VERSION = 1
"""Bump when the synthetic faces or scenes change, so cached models are retrained."""

DEMO_IMGSZ = 160
DEMO_TRAINING = {
    "model": "yolov8n.yaml",
    "imgsz": DEMO_IMGSZ,
    "epochs": 40,
    "train_images": 1500,
    "val_images": 150,
    "batch": 32,
    "optimizer": "AdamW",
    "lr0": 0.002,
    "mosaic": 0.0,
    "seed": 0,
}


def demo_model(epochs: int | None = None, verbose: bool = True) -> Path:
    """Path to the cached tiny model's weights, training it first when it is not cached."""
    settings = dict(DEMO_TRAINING, epochs=epochs or DEMO_TRAINING["epochs"], generator=GENERATOR_VERSION)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_root() / "demo-model" / key
    weights = folder / "emotion-demo.pt"
    if weights.exists():
        return weights
    folder.mkdir(parents=True, exist_ok=True)
    data = write_scene_dataset(folder / "data", settings["train_images"], settings["val_images"], DEMO_IMGSZ)
    from ultralytics import YOLO

    model = YOLO(settings["model"])
    TrainingProgress().attach(model)
    model.train(
        data=str(data),
        epochs=settings["epochs"],
        imgsz=DEMO_IMGSZ,
        batch=settings["batch"],
        optimizer=settings["optimizer"],
        lr0=settings["lr0"],
        mosaic=settings["mosaic"],
        close_mosaic=0,
        warmup_epochs=1,
        seed=settings["seed"],
        deterministic=True,
        workers=0,
        device="cpu",
        amp=False,
        plots=False,
        project=str(folder / "runs"),
        name="train",
        exist_ok=True,
        verbose=verbose,
    )
    best = folder / "runs" / "train" / "weights" / "best.pt"
    shutil.copy2(best, weights.with_suffix(".tmp"))
    weights.with_suffix(".tmp").rename(weights)
    shutil.rmtree(folder / "data", ignore_errors=True)
    return weights
