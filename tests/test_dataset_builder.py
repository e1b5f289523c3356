"""Detection data sets from FER faces: both modes, both splits, balancing, caching."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from training.dataset_builder import BuildSettings, balanced, build_detection_dataset, split_indices
from training.fer2013 import FerDataset
from training.synthetic_faces import FER_CLASSES, synthetic_fer


@pytest.fixture(scope="module")
def fer() -> FerDataset:
    images, labels = synthetic_fer(20, seed=2)
    usage = np.array(["Training", "Training", "Training", "PublicTest", "PrivateTest"] * 28)
    return FerDataset(images, labels, usage, "synthetic")


def _labels(data_yaml: Path, split: str) -> list[list[float]]:
    root = Path(yaml.safe_load(data_yaml.read_text())["path"])
    return [[float(v) for v in line.split()] for f in sorted((root / "labels" / split).glob("*.txt"))
            for line in f.read_text().splitlines()]


def test_paper_split_is_70_20_10_stratified(fer: FerDataset) -> None:
    parts = split_indices(fer, "paper")
    assert [len(parts[name]) for name in ("train", "val", "test")] == [98, 28, 14]
    for c in range(7):
        assert [int((fer.labels[parts[n]] == c).sum()) for n in ("train", "val", "test")] == [14, 4, 2]
    assert len(set(np.concatenate(list(parts.values())))) == 140


def test_official_split_follows_usage(fer: FerDataset) -> None:
    parts = split_indices(fer, "official")
    assert set(fer.usage[parts["val"]]) == {"PublicTest"} and set(fer.usage[parts["test"]]) == {"PrivateTest"}


def test_rare_classes_are_oversampled_in_train() -> None:
    labels = np.array([1] * 3 + [3] * 40 + [0] * 30)
    result = balanced(labels, np.arange(len(labels)), 0.25)
    assert int((labels[result] == 1).sum()) == 10 and int((labels[result] == 3).sum()) == 40


def test_paper_mode_one_box_per_scaled_face(tmp_path: Path, fer: FerDataset) -> None:
    data_yaml = build_detection_dataset(fer, tmp_path, BuildSettings(mode="paper", imgsz=96, balance_to=0))
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == dict(enumerate(FER_CLASSES)) and {"train", "val", "test"} <= set(data)
    rows = _labels(data_yaml, "train")
    assert len(rows) == 98 and all(row[1:] == [0.5, 0.5, 0.9, 0.9] for row in rows)
    image = cv2.imread(str(next((Path(data["path"]) / "images" / "train").glob("*.png"))))
    assert image.shape == (96, 96, 3)


def test_scenes_mode_places_every_face_once(tmp_path: Path, fer: FerDataset) -> None:
    data_yaml = build_detection_dataset(fer, tmp_path, BuildSettings(mode="scenes", imgsz=160, balance_to=0))
    root = Path(yaml.safe_load(data_yaml.read_text())["path"])
    for split, expected in (("train", 98), ("val", 28), ("test", 14)):
        rows = _labels(data_yaml, split)
        images = list((root / "images" / split).glob("*.png"))
        assert len(rows) <= expected and len(rows) >= 0.9 * expected  # faces pushed off the canvas are rare
        assert len(images) < len(rows), "scenes hold several faces"
        assert all(0 < row[3] < 1 and 0 < row[4] < 1 for row in rows)


def test_builds_are_cached_and_settings_change_the_key(tmp_path: Path, fer: FerDataset) -> None:
    settings = BuildSettings(mode="paper", imgsz=64)
    first = build_detection_dataset(fer, tmp_path, settings)
    stamp = first.stat().st_mtime_ns
    assert build_detection_dataset(fer, tmp_path, settings) == first and first.stat().st_mtime_ns == stamp
    assert build_detection_dataset(fer, tmp_path, BuildSettings(mode="paper", imgsz=64, seed=1)) != first
