"""FER2013 faces to an ultralytics detection data set (images, labels, data.yaml).

Two modes:
- `paper`: each face scaled up to the input size with one box around it (the source paper);
- `scenes` (default): several faces of varied sizes composited onto varied backgrounds per
  image, so the detector learns to find faces in real frames, not only to classify crops.

Splits are the paper's 70/20/10, stratified by class, or FER2013's official Usage
(Training / PublicTest / PrivateTest). Rare classes (disgust is about 1.5% of FER2013) are
oversampled in the training split. Builds are cached by content and settings: a second
call with the same inputs reuses the built set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from training.fer2013 import DatasetError, FerDataset
from training.scenes import make_scene, write_data_yaml, write_example
from training.synthetic_faces import FER_CLASSES

log = logging.getLogger(__name__)

BUILDER_VERSION = 1
PAPER_BOX_MARGIN = 0.05
"""In paper mode the box spans the crop less this share on each side (FER crops are registered faces)."""


@dataclass(frozen=True)
class BuildSettings:
    """How a detection data set is built from FER faces."""

    mode: str = "scenes"
    split: str = "paper"
    """paper (70/20/10 stratified) or official (FER2013 Usage)."""
    imgsz: int = 640
    balance_to: float = 0.25
    """Oversample each training class to at least this share of the largest class (0: off)."""
    max_faces: int = 3
    seed: int = 0


def split_indices(dataset: FerDataset, how: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of train/val/test: the paper's stratified 70/20/10, or the official Usage split."""
    if how == "official":
        parts = {"train": dataset.usage == "Training", "val": dataset.usage == "PublicTest",
                 "test": dataset.usage == "PrivateTest"}
        result = {name: np.flatnonzero(mask) for name, mask in parts.items()}
        if not len(result["val"]):  # the folder layout has no PublicTest: carve val from train
            train, val = _stratified(dataset.labels, result["train"], (7 / 8, 1 / 8), seed)
            result["train"], result["val"] = train, val
        return result
    if how != "paper":
        raise DatasetError(f"unknown split {how!r}: use paper (70/20/10) or official (FER2013 Usage)")
    train, val, test = _stratified(dataset.labels, np.arange(len(dataset)), (0.7, 0.2, 0.1), seed)
    return {"train": train, "val": val, "test": test}


def balanced(labels: np.ndarray, indices: np.ndarray, balance_to: float, seed: int = 0) -> np.ndarray:
    """`indices` with rare classes repeated until each has `balance_to` of the largest class's count."""
    if balance_to <= 0 or not len(indices):
        return indices
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels[indices], minlength=len(FER_CLASSES))
    target = int(counts.max() * balance_to)
    extra = [
        rng.choice(indices[labels[indices] == c], target - counts[c], replace=True)
        for c in range(len(FER_CLASSES))
        if 0 < counts[c] < target
    ]
    return np.concatenate([indices, *extra]) if extra else indices


def build_detection_dataset(dataset: FerDataset, out_root: str | Path, settings: BuildSettings) -> Path:
    """Build (or reuse) the detection data set for `dataset` under `out_root`; returns data.yaml."""
    if settings.mode not in ("paper", "scenes"):
        raise DatasetError(f"unknown build mode {settings.mode!r}: use paper or scenes")
    folder = Path(out_root) / f"{settings.mode}-{settings.split}-{_cache_key(dataset, settings)}"
    data_yaml = folder / "data.yaml"
    if data_yaml.exists():
        log.info("reusing the built data set %s", folder)
        return data_yaml
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    splits = split_indices(dataset, settings.split, settings.seed)
    splits["train"] = balanced(dataset.labels, splits["train"], settings.balance_to, settings.seed)
    rng = np.random.default_rng(settings.seed)
    for split, indices in splits.items():
        if settings.mode == "paper":
            _write_paper(dataset, indices, staging, split, settings.imgsz)
        else:
            _write_scenes(dataset, rng.permutation(indices), staging, split, settings, rng)
    write_data_yaml(staging, [name for name, indices in splits.items() if len(indices)], final_root=folder)
    (staging / "build.json").write_text(json.dumps(
        {"source": dataset.source, "settings": asdict(settings),
         "images": {name: int(len(indices)) for name, indices in splits.items()}}, indent=2))
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted earlier build
    staging.rename(folder)
    return data_yaml


def _write_paper(dataset: FerDataset, indices: np.ndarray, root: Path, split: str, imgsz: int) -> None:
    margin = imgsz * PAPER_BOX_MARGIN
    box = (margin, margin, imgsz - margin, imgsz - margin)
    for number, index in enumerate(tqdm(indices, desc=f"paper {split}", unit="face", leave=False)):
        image = cv2.cvtColor(cv2.resize(dataset.images[index], (imgsz, imgsz), interpolation=cv2.INTER_LINEAR),
                             cv2.COLOR_GRAY2BGR)
        write_example(root, split, f"{split}_{number:06d}", image, [(int(dataset.labels[index]), box)])


def _write_scenes(
    dataset: FerDataset, indices: np.ndarray, root: Path, split: str, settings: BuildSettings, rng: np.random.Generator
) -> None:
    queue = iter(indices.tolist())
    remaining = [len(indices)]

    def next_face(_rng: np.random.Generator) -> tuple[np.ndarray, int, None]:
        index = next(queue)
        remaining[0] -= 1
        return dataset.images[index], int(dataset.labels[index]), None

    number = 0
    with tqdm(total=len(indices), desc=f"scenes {split}", unit="face", leave=False) as bar:
        while remaining[0] > 0:
            before = remaining[0]
            image, labels = make_scene(settings.imgsz, rng, min(settings.max_faces, remaining[0]), next_face=next_face)
            if labels:
                write_example(root, split, f"{split}_{number:06d}", image, labels)
                number += 1
            bar.update(before - remaining[0])


def _stratified(labels: np.ndarray, indices: np.ndarray, shares: tuple[float, ...], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in shares]
    for c in range(len(FER_CLASSES)):
        members = rng.permutation(indices[labels[indices] == c])
        bounds = np.round(np.cumsum(shares) / sum(shares) * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, bounds[:-1])):
            part.extend(chunk.tolist())
    return [np.asarray(sorted(part), np.int64) for part in parts]


def _cache_key(dataset: FerDataset, settings: BuildSettings) -> str:
    digest = hashlib.sha256()
    for array in (dataset.images, dataset.labels, dataset.usage.astype("U16")):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps(asdict(settings) | {"version": BUILDER_VERSION}, sort_keys=True).encode())
    return digest.hexdigest()[:12]
