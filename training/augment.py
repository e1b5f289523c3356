"""The source paper's augmentations, as albumentations transforms for ultralytics training.

Probabilities as published: horizontal flip 0.5, vertical flip 0.2, random brightness and
contrast 0.5, shift-scale-rotate 0.5, Gaussian blur 0.3, RGB shift 0.3, CLAHE 0.3, coarse
dropout 0.2. Geometric ones move the boxes with the image (ultralytics passes them through
albumentations' bbox handling). Normalisation (to 0..1) is ultralytics' own last step, so it
is not repeated here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PAPER_PROBABILITIES: dict[str, float] = {
    "horizontal_flip": 0.5,
    "vertical_flip": 0.2,
    "brightness_contrast": 0.5,
    "shift_scale_rotate": 0.5,
    "gaussian_blur": 0.3,
    "rgb_shift": 0.3,
    "clahe": 0.3,
    "coarse_dropout": 0.2,
}


def paper_augmentations(probabilities: dict[str, float] | None = None) -> list:
    """The paper's transforms in its order; `probabilities` overrides any of PAPER_PROBABILITIES."""
    import albumentations as A

    p = PAPER_PROBABILITIES | (probabilities or {})
    unknown = set(p) - set(PAPER_PROBABILITIES)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {', '.join(sorted(unknown))}; known: {', '.join(PAPER_PROBABILITIES)}")
    return [
        A.HorizontalFlip(p=p["horizontal_flip"]),
        A.VerticalFlip(p=p["vertical_flip"]),
        A.RandomBrightnessContrast(p=p["brightness_contrast"]),
        A.Affine(translate_percent=(-0.0625, 0.0625), scale=(0.9, 1.1), rotate=(-45, 45), p=p["shift_scale_rotate"]),
        A.GaussianBlur(p=p["gaussian_blur"]),
        A.RGBShift(p=p["rgb_shift"]),
        A.CLAHE(p=p["clahe"]),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15),
                        p=p["coarse_dropout"]),
    ]


def augmentation_grid(images: list[np.ndarray], path: str | Path, copies: int = 3, seed: int = 0) -> Path:
    """The paper's Figure 1: each original (first column) beside `copies` augmented versions."""
    import albumentations as A

    pipeline = A.Compose(paper_augmentations(), seed=seed)
    rows = []
    for image in images:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        tiles = [_labelled(image, "original")]
        tiles += [_labelled(pipeline(image=image)["image"], f"augmented {i + 1}") for i in range(copies)]
        rows.append(np.hstack(tiles))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))
    return path


def _labelled(image: np.ndarray, text: str, size: int = 160) -> np.ndarray:
    tile = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
    tile = cv2.copyMakeBorder(tile, 18, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    cv2.putText(tile, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return tile
