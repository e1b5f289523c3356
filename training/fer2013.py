"""FER2013 in the formats users have, detected automatically, validated with clear errors.

- Kaggle `fer2013.csv`: columns emotion,pixels,Usage; label i is FER_CLASSES[i];
  pixels are 2304 space-separated grey values (48x48); Usage is Training, PublicTest or
  PrivateTest.
- Image folders: `train/` and `test/`, one folder per class named as in FER_CLASSES.
- Optional FER+ relabels (`fer2013new.csv`, rows aligned with fer2013.csv): each image's
  label becomes the majority vote of its ten annotators; images whose majority is
  unknown, not-a-face or contempt (no FER2013 class) are dropped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import EmotionStreamError
from training.synthetic_faces import FER_CLASSES, FER_SIZE

USAGES = ("Training", "PublicTest", "PrivateTest")
FOLDER_USAGE = {"train": "Training", "test": "PrivateTest"}
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
FERPLUS_TO_FER = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
                  "anger": "angry", "disgust": "disgust", "fear": "fear"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


class DatasetError(EmotionStreamError):
    """A data set file or folder is malformed; the message names the file and the problem."""

    exit_code = 6


@dataclass(frozen=True)
class FerDataset:
    """Grey 48x48 faces with FER2013 labels and their official split."""

    images: np.ndarray
    """(N, 48, 48) uint8."""
    labels: np.ndarray
    """(N,) int64, indices into FER_CLASSES."""
    usage: np.ndarray
    """(N,) str: Training, PublicTest or PrivateTest."""
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Images per class name."""
        return {name: int((self.labels == i).sum()) for i, name in enumerate(FER_CLASSES)}


def load_fer(path: str | Path, ferplus: str | Path | None = None) -> FerDataset:
    """Load FER2013 from a fer2013.csv file or a train/test image-folder tree (detected)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"data set not found: {path}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path}: expected fer2013.csv or a folder with train/ and test/")
        dataset = load_fer2013_csv(path)
    elif (path / "fer2013.csv").is_file():
        dataset = load_fer2013_csv(path / "fer2013.csv")
    else:
        dataset = load_image_folders(path)
    return apply_ferplus(dataset, ferplus) if ferplus else dataset


def load_fer2013_csv(path: Path) -> FerDataset:
    """Read Kaggle's fer2013.csv, checking every row."""
    images, labels, usage = [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; expected emotion,pixels,Usage "
                f"(found {','.join(reader.fieldnames or []) or 'no header'})"
            )
        for line, row in enumerate(reader, start=2):
            labels.append(_label(row["emotion"], path, line))
            images.append(_pixels(row["pixels"], path, line))
            if row["Usage"] not in USAGES:
                raise DatasetError(f"{path}:{line}: Usage {row['Usage']!r} is not one of {', '.join(USAGES)}")
            usage.append(row["Usage"])
    if not images:
        raise DatasetError(f"{path}: no rows")
    return _checked(FerDataset(np.stack(images), np.asarray(labels, np.int64), np.asarray(usage), str(path)))


def load_image_folders(root: Path) -> FerDataset:
    """Read the image-folder layout: root/{train,test}/{class}/*.png|jpg."""
    splits = [split for split in FOLDER_USAGE if (root / split).is_dir()]
    if not splits:
        raise DatasetError(f"{root}: expected fer2013.csv or folders train/ and test/ with one folder per class")
    images, labels, usage = [], [], []
    for split in splits:
        for folder in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            if folder.name not in FER_CLASSES:
                raise DatasetError(f"{folder}: unknown class folder {folder.name!r}; expected {', '.join(FER_CLASSES)}")
            for file in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    raise DatasetError(f"{file}: not a readable image")
                if image.shape != (FER_SIZE, FER_SIZE):
                    image = cv2.resize(image, (FER_SIZE, FER_SIZE), interpolation=cv2.INTER_AREA)
                images.append(image)
                labels.append(FER_CLASSES.index(folder.name))
                usage.append(FOLDER_USAGE[split])
    if not images:
        raise DatasetError(f"{root}: no images found in {', '.join(splits)}")
    return _checked(FerDataset(np.stack(images), np.asarray(labels, np.int64), np.asarray(usage), str(root)))


def apply_ferplus(dataset: FerDataset, path: str | Path) -> FerDataset:
    """Relabel by FER+ majority vote (rows aligned with fer2013.csv); drop images FER+ rejects."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(FERPLUS_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: not a FER+ file, missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    if len(rows) != len(dataset):
        raise DatasetError(f"{path}: {len(rows)} rows but the FER2013 data has {len(dataset)}; they must align")
    keep, labels = [], []
    for line, row in enumerate(rows, start=2):
        try:
            votes = {name: int(row[name]) for name in FERPLUS_COLUMNS}
        except ValueError:
            raise DatasetError(f"{path}:{line}: vote counts must be integers") from None
        winner = max(votes, key=votes.get)
        if votes[winner] > 0 and winner in FERPLUS_TO_FER:
            keep.append(line - 2)
            labels.append(FER_CLASSES.index(FERPLUS_TO_FER[winner]))
    index = np.asarray(keep, np.int64)
    return FerDataset(dataset.images[index], np.asarray(labels, np.int64), dataset.usage[index], f"{dataset.source}+ferplus")


def _label(text: str, path: Path, line: int) -> int:
    try:
        label = int(text)
    except ValueError:
        raise DatasetError(f"{path}:{line}: emotion {text!r} is not a label 0-6") from None
    if not 0 <= label < len(FER_CLASSES):
        raise DatasetError(f"{path}:{line}: emotion {label} is outside 0-6 ({', '.join(FER_CLASSES)})")
    return label


def _pixels(text: str, path: Path, line: int) -> np.ndarray:
    values = text.split()
    if len(values) != FER_SIZE * FER_SIZE:
        raise DatasetError(f"{path}:{line}: pixels has {len(values)} values, expected {FER_SIZE * FER_SIZE} (48x48)")
    try:
        pixels = np.asarray(values, dtype=np.int64)
    except ValueError:
        raise DatasetError(f"{path}:{line}: pixels must be integers 0-255") from None
    if pixels.min() < 0 or pixels.max() > 255:
        raise DatasetError(f"{path}:{line}: pixel values must be 0-255")
    return pixels.astype(np.uint8).reshape(FER_SIZE, FER_SIZE)


def _checked(dataset: FerDataset) -> FerDataset:
    empty = [name for name, count in dataset.counts().items() if count == 0]
    if empty:
        raise DatasetError(f"{dataset.source}: class(es) with no images: {', '.join(empty)}")
    return dataset


def write_fer2013_csv(path: Path, images: np.ndarray, labels: np.ndarray, usage: list[str] | np.ndarray) -> Path:
    """Write faces in Kaggle's fer2013.csv format."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for image, label, split in zip(images, labels, usage):
            writer.writerow([int(label), " ".join(str(int(v)) for v in image.reshape(-1)), split])
    return path


def write_image_folders(root: Path, images: np.ndarray, labels: np.ndarray, usage: list[str] | np.ndarray) -> Path:
    """Write faces in the train/ test/ per-class folder layout (PNG)."""
    folder_of = {usage_name: split for split, usage_name in FOLDER_USAGE.items()}
    for number, (image, label, split) in enumerate(zip(images, labels, usage)):
        folder = root / folder_of.get(split, "test") / FER_CLASSES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{number:06d}.png"), image)
    return root
