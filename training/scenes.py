"""Scenes built from FER-format faces: faces of varied sizes composited onto varied backgrounds.

Used for detection training (`scenes` mode) and by the synthetic video renderer, so the
detector sees the same kind of pixels in training and in the demo video.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import yaml

from training.synthetic_faces import FER_CLASSES, FaceIdentity, draw_face, face_mask

Box = tuple[float, float, float, float]


def random_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A BGR uint8 background: a tinted gradient with shapes and noise, no faces."""
    base = rng.uniform(30, 220, 3)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None] * rng.uniform(-60, 60, 3)
    image = np.broadcast_to(base + ramp, (height, width, 3)).astype(np.float32).copy()
    for _ in range(int(rng.integers(2, 7))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(max(4, min(height, width) // 20), max(8, min(height, width) // 3)))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), color, -1)
        else:
            cv2.circle(image, (x, y), size // 2, color, -1)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def paste_face(
    canvas: np.ndarray, face: np.ndarray, identity: FaceIdentity | None, x: int, y: int, size: int
) -> Box:
    """Blend a 48x48 grayscale face into BGR `canvas` at (x, y) with side `size`; return its box.

    Only the face ellipse (plus a soft margin) is pasted, so a detector learns faces, not
    squares. The returned box is the face's extent in canvas pixels, clipped to the canvas.
    """
    height, width = canvas.shape[:2]
    patch = cv2.resize(face, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    alpha = face_mask(identity, size)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + size), min(height, y + size)
    if x1 <= x0 or y1 <= y0:
        return (0.0, 0.0, 0.0, 0.0)
    crop = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    a = alpha[crop][..., None]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = np.clip(region * (1 - a) + patch[crop][..., None] * a, 0, 255).astype(np.uint8)
    rows, cols = np.nonzero(alpha[crop] > 0.5)
    if not len(rows):
        return (0.0, 0.0, 0.0, 0.0)
    return (float(x0 + cols.min()), float(y0 + rows.min()), float(x0 + cols.max() + 1), float(y0 + rows.max() + 1))


FaceDraw = Callable[[np.random.Generator], tuple[np.ndarray, int, "FaceIdentity | None"]]
"""Gives a 48x48 grey face, its class index and its identity (None for a real crop)."""


def synthetic_face(rng: np.random.Generator) -> tuple[np.ndarray, int, FaceIdentity]:
    """A drawn face of a random expression and identity."""
    label = int(rng.integers(len(FER_CLASSES)))
    identity = FaceIdentity.sample(rng)
    return draw_face(FER_CLASSES[label], identity, rng), label, identity


def make_scene(
    imgsz: int,
    rng: np.random.Generator,
    max_faces: int = 3,
    min_size: float = 0.12,
    max_size: float = 0.45,
    next_face: FaceDraw = synthetic_face,
) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """A square BGR scene with 1..max_faces faces from `next_face`; returns the image and (class, box) labels."""
    canvas = random_background(imgsz, imgsz, rng)
    labels: list[tuple[int, Box]] = []
    taken: list[Box] = []
    for _ in range(int(rng.integers(1, max_faces + 1))):
        size = int(imgsz * rng.uniform(min_size, max_size))
        for _attempt in range(10):
            x = int(rng.integers(-size // 6, imgsz - size + size // 6))
            y = int(rng.integers(-size // 6, imgsz - size + size // 6))
            candidate = (x, y, x + size, y + size)
            if all(_overlap(candidate, other) < 0.1 for other in taken):
                break
        else:
            continue
        face, label, identity = next_face(rng)
        box = paste_face(canvas, face, identity, x, y, size)
        if box[2] - box[0] >= 4 and box[3] - box[1] >= 4:
            labels.append((label, box))
            taken.append(candidate)
    return canvas, labels


def write_scene_dataset(
    root: Path, train: int, val: int, imgsz: int, seed: int = 0, rng: np.random.Generator | None = None
) -> Path:
    """Write an ultralytics detection data set of synthetic scenes; returns its data.yaml.

    The scenes draw from `rng` when given (a `PlanRecorder` records them), else from a new generator seeded `seed`.
    """
    rng = np.random.default_rng(seed) if rng is None else rng
    for split, count in (("train", train), ("val", val)):
        for i in range(count):
            image, labels = make_scene(imgsz, rng)
            write_example(root, split, f"{split}_{i:05d}", image, labels)
    return write_data_yaml(root, ["train", "val"])


def write_example(root: Path, split: str, name: str, image: np.ndarray, labels: list[tuple[int, Box]]) -> None:
    """One image and its YOLO label file in the ultralytics layout (images/SPLIT, labels/SPLIT)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / split / f"{name}.png"), image)
    (root / "labels" / split / f"{name}.txt").write_text(yolo_labels(labels, image.shape[1], image.shape[0]))


def write_data_yaml(
    root: Path, splits: list[str], names: tuple[str, ...] = FER_CLASSES, final_root: Path | None = None
) -> Path:
    """The data.yaml of a data set under `root` with the given splits (train, val and maybe test).

    `final_root` is where the folder will live when it is built elsewhere and moved.
    """
    data = {"path": str((final_root or root).resolve())} | {split: f"images/{split}" for split in splits}
    data["names"] = dict(enumerate(names))
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def yolo_labels(labels: list[tuple[int, Box]], width: int, height: int) -> str:
    """YOLO label lines (class cx cy w h, normalised) for pixel boxes."""
    lines = []
    for label, (x1, y1, x2, y2) in labels:
        cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _overlap(a: tuple[int, int, int, int], b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller else 0.0
