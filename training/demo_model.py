"""The tiny emotion detector of the demo and the tests: shipped with the package, retrainable from scratch.

`training/assets/emotion-demo.pt` is what `train_demo_model` makes from `DEMO_TRAINING` on synthetic
scenes; its record (`emotion-demo.json`) holds the key of the settings it was trained from. The demo
and the tests use the shipped file while that key is today's; `demo --retrain` and one test train it
again from scratch and compare, so the file cannot drift from the code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.cache import cache_root, file_digest
from pipeline.engine.batch import Detections
from training.progress import TrainingProgress
from training.scenes import make_scene, write_scene_dataset
from training.script_agreement import score_timeline
from training.synthetic_video import FaceTruth

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Bump when the synthetic faces or scenes change, so the shipped model is retrained."""

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

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED_WEIGHTS = ASSETS / "emotion-demo.pt"
SHIPPED_RECORD = ASSETS / "emotion-demo.json"

MATCH_SHARE = 0.95
"""A retrained model matches the shipped one when at least this share of their faces agree."""
COMPARISON_SCENES = 100


def settings_key() -> str:
    """A short hash of the training settings and the scene generator's version."""
    settings = dict(DEMO_TRAINING, generator=GENERATOR_VERSION)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def shipped_is_current() -> bool:
    """True when the shipped weights exist, are the recorded bytes, and were trained from today's settings."""
    if not (SHIPPED_WEIGHTS.is_file() and SHIPPED_RECORD.is_file()):
        return False
    record = json.loads(SHIPPED_RECORD.read_text())
    return record.get("settings_key") == settings_key() and record.get("sha256") == file_digest(SHIPPED_WEIGHTS)


def demo_model(verbose: bool = False) -> Path:
    """The shipped weights while they match today's settings; otherwise trained once and cached."""
    if shipped_is_current():
        return SHIPPED_WEIGHTS
    weights = cache_root() / "demo-model" / settings_key() / "emotion-demo.pt"
    if not weights.exists():
        log.warning("the shipped demo model was trained from other settings: training one now (cached in %s)",
                    weights.parent)
        train_demo_model(weights, verbose=verbose)
    return weights


def train_demo_model(weights: Path, verbose: bool = False) -> Path:
    """Train the demo model from scratch with `DEMO_TRAINING` and write it to `weights`."""
    from ultralytics import YOLO

    settings = DEMO_TRAINING
    weights.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="emotion-demo-", dir=weights.parent) as work:
        data = write_scene_dataset(Path(work) / "data", settings["train_images"], settings["val_images"], DEMO_IMGSZ)
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
            project=work,
            name="train",
            exist_ok=True,
            verbose=verbose,
        )
        staging = weights.with_suffix(".part")
        shutil.copy2(Path(work) / "train" / "weights" / "best.pt", staging)
        staging.replace(weights)
    return weights


@dataclass(frozen=True)
class ModelMatch:
    """How a retrained demo model compares with the shipped one on the same synthetic scenes."""

    identical: bool
    """Every weight tensor is equal."""
    faces: int
    """Faces either model found (a face both found counts once)."""
    agreeing: int
    """Faces both found (IoU >= 0.5) with the same emotion."""

    @property
    def agreement(self) -> float:
        """Share of faces on which the two models agree."""
        return self.agreeing / self.faces if self.faces else 1.0

    @property
    def matches(self) -> bool:
        """True when the weights are identical or the predictions agree on `MATCH_SHARE` of faces."""
        return self.identical or self.agreement >= MATCH_SHARE

    def format(self) -> str:
        """One line for people."""
        weights = "identical weights" if self.identical else "weights differ in the last bits"
        verdict = "matches" if self.matches else f"DOES NOT match (needs {MATCH_SHARE:.0%})"
        return (f"{verdict} the shipped model: {weights}; same face and emotion on {self.agreeing}/{self.faces} "
                f"faces of {COMPARISON_SCENES} scenes ({self.agreement:.1%})")


def compare_models(first: Path, second: Path) -> ModelMatch:
    """Compare two demo models' weights and their faces on `COMPARISON_SCENES` unseen synthetic scenes."""
    from pipeline.engine.detector import DetectorSettings, EmotionDetector

    settings = DetectorSettings(imgsz=DEMO_IMGSZ)
    a, b = (EmotionDetector(path, "cpu", settings) for path in (first, second))
    state_a, state_b = a.backend.model.state_dict(), b.backend.model.state_dict()
    identical = state_a.keys() == state_b.keys() and all(state_a[k].equal(state_b[k]) for k in state_a)
    rng = np.random.default_rng(12345)
    images = [make_scene(DEMO_IMGSZ, rng)[0] for _ in range(COMPARISON_SCENES)]
    faces_a, faces_b = (_faces_per_image(detector.detect(images)) for detector in (a, b))
    truth = [[FaceTruth(0, box, str(label)) for box, label in frame] for frame in faces_a]
    agreement = score_timeline(truth, [[(box, str(label)) for box, label in frame] for frame in faces_b])
    return ModelMatch(identical, agreement.face_frames + agreement.false_faces, agreement.correct)


def _faces_per_image(found: Detections) -> list[list[tuple[tuple[float, ...], int]]]:
    return [[(tuple(found.xyxy[row].tolist()), int(found.class_id[row]))
             for row in range(found.offsets[i], found.offsets[i + 1])] for i in range(len(found.frames))]
