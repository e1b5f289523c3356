"""The tiny emotion detector of the demo and the tests: shipped with the package, retrainable from scratch.

`training/assets/emotion-demo.pt` is what `train_demo_model` makes from `DEMO_TRAINING` on synthetic
scenes; its record (`emotion-demo.json`) holds the key of the settings it was trained from. The demo
and the tests use the shipped file while that key is today's; `demo --retrain` and one test train it
again from scratch and compare, so the file cannot drift from the code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.cache import cache_root, file_digest
from pipeline.engine.batch import Detections
from training.first_epoch import FirstEpochRecorder, UpdateFingerprint
from training.progress import TrainingProgress
from training.scene_plan import PlanRecorder
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

SCENE_LIBRARIES = ("numpy", "opencv-python", "opencv-python-headless")
"""The distributions whose releases decide the scenes' bytes: NumPy mixes and noises them, OpenCV draws and encodes
them (PNG). The record lists the releases under which the shipped scenes were made or checked byte for byte."""

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
    record = shipped_record()
    return record.get("settings_key") == settings_key() and record.get("sha256") == file_digest(SHIPPED_WEIGHTS)


def demo_model(verbose: bool = False) -> Path:
    """The shipped weights while they match today's settings; otherwise trained once and cached."""
    if shipped_is_current():
        return SHIPPED_WEIGHTS
    weights = cache_root() / "demo-model" / settings_key() / "emotion-demo.pt"
    if not weights.exists():
        log.warning("the shipped demo model is missing or was trained from other settings: training one now "
                    "(40-50 minutes on 2 cores; cached in %s)", weights.parent)
        train_demo_model(weights, verbose=verbose)
    return weights


@dataclass(frozen=True)
class DemoTraining:
    """What one training of the demo recipe made: the weights, the data set it drew, its first update."""

    weights: Path
    dataset_digest: str
    """SHA-256 of the synthetic images and labels, in name order."""
    scene_plan: str
    """SHA-256 of every random draw that made the scenes (`training.scene_plan`): no OpenCV release moves it."""
    first_epoch: UpdateFingerprint
    seconds: float


@dataclass(frozen=True)
class DemoScenes:
    """The recipe's synthetic data set on disk, with the digest of its bytes and of its plan."""

    data_yaml: Path
    digest: str
    plan: str


def draw_demo_scenes(root: Path) -> DemoScenes:
    """Write the recipe's scenes (train and val) under `root`."""
    plan = PlanRecorder(np.random.default_rng(DEMO_TRAINING["seed"]))
    data = write_scene_dataset(root, DEMO_TRAINING["train_images"], DEMO_TRAINING["val_images"], DEMO_IMGSZ, rng=plan)
    return DemoScenes(data, _dataset_digest(root), plan.digest())


def verify_scenes() -> str:
    """Draw the recipe's scenes under the installed releases and hold them to the record; one line saying how.

    Scenes with the recorded bytes add the installed releases to the record's `scenes_verified_under` (after a lock
    moved OpenCV or NumPy); other bytes raise, naming what to do.
    """
    record = shipped_record()
    with tempfile.TemporaryDirectory(prefix="emotion-demo-scenes-") as work:
        scenes = draw_demo_scenes(Path(work))
    if scenes.plan != record["scene_plan"]:
        raise RuntimeError("the scene generator's plan changed: bump GENERATOR_VERSION and retrain the demo model")
    libraries = scene_libraries()
    if scenes.digest != record["dataset_digest"]:
        raise RuntimeError(f"under {_releases(libraries)} the scenes come out with other bytes: hold these releases "
                           "back in locks/holds.in, or retrain and ship the demo model (python -m training.demo_model "
                           "ship)")
    if libraries not in record["scenes_verified_under"]:
        record["scenes_verified_under"].append(libraries)
        SHIPPED_RECORD.write_text(json.dumps(record, indent=2) + "\n")
    return f"the shipped scenes, byte for byte, under {_releases(libraries)}: recorded in {SHIPPED_RECORD.name}"


def _releases(libraries: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in libraries.items())


def train_demo_model(weights: Path, verbose: bool = False, first_epoch_only: bool = False) -> DemoTraining:
    """Train the demo model from scratch with `DEMO_TRAINING` and write it to `weights`.

    `first_epoch_only` stops after the first of the recipe's epochs (same schedule), to check a recipe cheaply.
    """
    from ultralytics import YOLO

    settings = DEMO_TRAINING
    weights.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="emotion-demo-", dir=weights.parent) as work:
        scenes = draw_demo_scenes(Path(work) / "data")
        model = YOLO(settings["model"])
        TrainingProgress().attach(model)
        first_epoch = FirstEpochRecorder(stop_after_first=first_epoch_only)
        first_epoch.attach(model)
        model.train(
            data=str(scenes.data_yaml),
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
    assert first_epoch.fingerprint is not None, "ultralytics ran no epoch"
    return DemoTraining(weights, scenes.digest, scenes.plan, first_epoch.fingerprint, time.monotonic() - started)


PORTABLE_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                    "DNNL_MAX_CPU_ISA": "AVX2"}
"""The CPU kernels of `check_recipe` on every x86-64 machine (PyTorch's, MKL's, oneDNN's AVX2 code). AVX-512 kernels
round differently, and over the first epoch's 47 steps that moves the same recipe's update away (cosine 0.95 measured
on an AVX-512 EPYC against the record made on an AVX2 machine); on AVX2 kernels it is the record's (cosine 1.0)."""


def check_recipe() -> DemoTraining:
    """The recipe's first epoch from scratch, in a child process on `PORTABLE_KERNELS` (about 60 s on 2 cores).

    What the record holds of a training: the scenes' digest and plan, and the first update. The kernels are chosen
    when PyTorch starts, hence the child process.
    """
    with tempfile.TemporaryDirectory(prefix="emotion-demo-check-") as work:
        result = Path(work) / "first-epoch.json"
        subprocess.run([sys.executable, "-m", "training.demo_model", "first-epoch", str(result)],
                       env=os.environ | PORTABLE_KERNELS, check=True)
        made = json.loads(result.read_text())
    return DemoTraining(Path(made["weights"]), made["dataset_digest"], made["scene_plan"],
                        UpdateFingerprint(tuple(made["first_epoch_update"])), made["seconds"])


def ship(weights: Path, seconds: float | None) -> None:
    """Make `weights` (trained by the recipe) the shipped demo model, with their record (for maintainers)."""
    import platform

    import torch
    import ultralytics

    check = check_recipe()
    ASSETS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, SHIPPED_WEIGHTS)
    record = {
        "settings_key": settings_key(),
        "settings": DEMO_TRAINING | {"generator": GENERATOR_VERSION},
        "sha256": file_digest(SHIPPED_WEIGHTS),
        "dataset_digest": check.dataset_digest,
        "scene_plan": check.scene_plan,
        "scenes_verified_under": [scene_libraries()],
        "first_epoch_update": list(check.first_epoch.projections),
        "trained_with": {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                         "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
                         "seconds": round(seconds) if seconds else None},
    }
    SHIPPED_RECORD.write_text(json.dumps(record, indent=2) + "\n")


def scene_libraries() -> dict[str, str]:
    """The installed releases of `SCENE_LIBRARIES` (those installed)."""
    versions = {}
    for name in SCENE_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def shipped_record() -> dict:
    """The shipped model's record (settings key, hashes, first-epoch fingerprint, how it was trained)."""
    return json.loads(SHIPPED_RECORD.read_text())


def _dataset_digest(root: Path) -> str:
    return hashlib.sha256((file_digest(root / "images") + file_digest(root / "labels")).encode()).hexdigest()


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


if __name__ == "__main__":
    # python -m training.demo_model ship [WEIGHTS]: make WEIGHTS (trained by this recipe) or, without them, a model
    #   retrained from scratch the shipped demo model, with its record.
    # python -m training.demo_model verify-scenes: after a lock moved OpenCV or NumPy (see verify_scenes).
    # python -m training.demo_model first-epoch OUT.json: the child process of check_recipe.
    command, arguments = sys.argv[1:2], sys.argv[2:]
    if command == ["verify-scenes"] and not arguments:
        try:
            print(verify_scenes())
        except RuntimeError as error:
            sys.exit(f"verify-scenes: {error}")
    elif command == ["first-epoch"] and len(arguments) == 1:
        out = Path(arguments[0])
        made = train_demo_model(out.with_suffix(".pt"), first_epoch_only=True)
        out.write_text(json.dumps({"weights": str(made.weights), "dataset_digest": made.dataset_digest,
                                   "scene_plan": made.scene_plan, "seconds": made.seconds,
                                   "first_epoch_update": list(made.first_epoch.projections)}))
    elif command == ["ship"] and len(arguments) <= 1:
        if arguments:
            ship(Path(arguments[0]), None)
        else:
            retrained = train_demo_model(cache_root() / "demo-model" / "retrained" / "emotion-demo.pt")
            ship(retrained.weights, retrained.seconds)
        print(f"shipped {SHIPPED_WEIGHTS} ({settings_key()})")
    else:
        sys.exit("usage: python -m training.demo_model ship [WEIGHTS] | verify-scenes | first-epoch OUT.json")
