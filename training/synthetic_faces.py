"""Synthetic FER-format faces: drawn 48x48 grayscale faces in the seven FER2013 expressions.

Each expression has its own geometry (brows, eyes, mouth) that survives downscaling, so a
tiny detector can learn them in seconds; identities (skin tone, face shape, background)
vary independently of expression, so the expression is what must be learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013's label order: label i of fer2013.csv is FER_CLASSES[i]."""

FER_SIZE = 48
_SCALE = 4  # draw at 4x, then downsample with area averaging for anti-aliasing
_S = FER_SIZE * _SCALE


@dataclass(frozen=True)
class FaceIdentity:
    """What stays the same for one synthetic person across expressions."""

    skin: int
    background: int
    face_width: float
    face_height: float
    eye_gap: float

    @staticmethod
    def sample(rng: np.random.Generator) -> FaceIdentity:
        """A random identity with skin and background far enough apart to see the face."""
        skin = int(rng.integers(110, 225))
        background = int(rng.integers(20, 90)) if rng.random() < 0.5 or skin > 200 else int(rng.integers(160, 250))
        if abs(background - skin) < 50:
            background = max(0, skin - 90)
        return FaceIdentity(
            skin=skin,
            background=background,
            face_width=float(rng.uniform(15.5, 18.5)),
            face_height=float(rng.uniform(19.5, 22.5)),
            eye_gap=float(rng.uniform(6.5, 8.0)),
        )


def draw_face(expression: str, identity: FaceIdentity, rng: np.random.Generator, jitter: float = 1.0) -> np.ndarray:
    """One 48x48 uint8 grayscale face showing `expression` (a name of FER_CLASSES)."""
    if expression not in FER_CLASSES:
        raise ValueError(f"unknown expression {expression!r}; expected one of {FER_CLASSES}")
    canvas = np.full((_S, _S), identity.background, np.float32)
    canvas += np.linspace(-12, 12, _S, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
    cx, cy = 24 + rng.normal(0, 0.8 * jitter), 25 + rng.normal(0, 0.8 * jitter)
    ink = max(0, identity.skin - 110)
    _ellipse(canvas, (cx, cy), (identity.face_width, identity.face_height), identity.skin, fill=True)
    _draw_features(canvas, expression, identity, (cx, cy), ink, rng, jitter)
    angle = rng.normal(0, 5 * jitter)
    rotation = cv2.getRotationMatrix2D((cx * _SCALE, cy * _SCALE), angle, 1.0)
    canvas = cv2.warpAffine(canvas, rotation, (_S, _S), borderMode=cv2.BORDER_REPLICATE)
    small = cv2.resize(canvas, (FER_SIZE, FER_SIZE), interpolation=cv2.INTER_AREA)
    small *= rng.uniform(0.85, 1.15)
    small += rng.normal(0, 3.0, small.shape)
    return np.clip(small, 0, 255).astype(np.uint8)


def face_mask(identity: FaceIdentity | None, size: int = FER_SIZE) -> np.ndarray:
    """A soft float mask (0..1) of the face ellipse plus a margin, for pasting onto scenes.

    Without an identity (a real FER2013 crop) the ellipse of an average face is used.
    """
    width, height = (identity.face_width, identity.face_height) if identity else (19.0, 22.0)
    mask = np.zeros((size, size), np.float32)
    k = size / FER_SIZE
    axes = (int((width + 3) * k), int((height + 3) * k))
    cv2.ellipse(mask, (size // 2, int(25 * k)), axes, 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 1.0 * k)


def synthetic_fer(count_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count_per_class` faces of each expression: images (N, 48, 48) uint8 and labels (N,)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, expression in enumerate(FER_CLASSES):
        for _ in range(count_per_class):
            images.append(draw_face(expression, FaceIdentity.sample(rng), rng))
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.stack(images)[order], np.asarray(labels, np.int64)[order]


def _draw_features(
    canvas: np.ndarray,
    expression: str,
    identity: FaceIdentity,
    center: tuple[float, float],
    ink: int,
    rng: np.random.Generator,
    jitter: float,
) -> None:
    cx, cy = center
    gap = identity.eye_gap
    eye_y = cy - 5 + rng.normal(0, 0.3 * jitter)
    mouth_y = cy + 10 + rng.normal(0, 0.3 * jitter)
    eyes = {
        "angry": (3.0, 1.1),
        "disgust": (2.8, 1.0),
        "fear": (3.4, 3.0),
        "happy": (2.8, 1.6),
        "sad": (2.6, 1.5),
        "surprise": (3.4, 3.4),
        "neutral": (2.6, 1.8),
    }[expression]
    for side in (-1, 1):
        _ellipse(canvas, (cx + side * gap, eye_y), eyes, ink, fill=True)
    # Brows: (height above the eye, inner-end drop); positive drop pulls the inner ends down.
    brow_lift, inner_drop = {
        "angry": (3.2, 2.6),
        "disgust": (3.0, 1.4),
        "fear": (5.5, -2.0),
        "happy": (4.5, 0.0),
        "sad": (4.0, -2.4),
        "surprise": (6.5, 0.0),
        "neutral": (4.2, 0.0),
    }[expression]
    for side in (-1, 1):
        outer = (cx + side * (gap + 4), eye_y - brow_lift)
        inner = (cx + side * (gap - 3.5), eye_y - brow_lift + inner_drop)
        _line(canvas, outer, inner, ink, 1.3)
    _draw_mouth(canvas, expression, cx, mouth_y, ink)
    if expression == "disgust":
        for side in (-1, 1):
            _line(canvas, (cx + side * 1.5, cy + 1), (cx + side * 3.5, cy + 4), ink, 0.8)
    else:
        _line(canvas, (cx, cy - 1), (cx, cy + 3), int(ink * 0.5 + identity.skin * 0.5), 0.8)


def _draw_mouth(canvas: np.ndarray, expression: str, cx: float, my: float, ink: int) -> None:
    if expression == "happy":
        _arc(canvas, (cx, my - 3), (7.5, 5.0), 10, 170, ink, 1.6)
    elif expression == "sad":
        _arc(canvas, (cx, my + 3), (6.5, 4.0), 190, 350, ink, 1.4)
    elif expression == "surprise":
        _ellipse(canvas, (cx, my), (3.2, 4.8), ink, fill=True)
    elif expression == "fear":
        _ellipse(canvas, (cx, my), (7.0, 2.4), ink, fill=True)
    elif expression == "angry":
        _line(canvas, (cx - 6, my + 1.2), (cx + 6, my + 1.2), ink, 1.4)
        _line(canvas, (cx - 6, my + 1.2), (cx - 7.5, my + 2.8), ink, 1.2)
        _line(canvas, (cx + 6, my + 1.2), (cx + 7.5, my + 2.8), ink, 1.2)
    elif expression == "disgust":
        points = [(cx - 6, my + 1), (cx - 3, my - 1.5), (cx, my + 0.5), (cx + 3, my - 2), (cx + 6, my)]
        for a, b in zip(points, points[1:]):
            _line(canvas, a, b, ink, 1.3)
    else:
        _line(canvas, (cx - 5.5, my), (cx + 5.5, my), ink, 1.2)


def _px(value: float) -> int:
    return int(round(value * _SCALE))


def _ellipse(canvas: np.ndarray, center: tuple[float, float], axes: tuple[float, float], tone: int, fill: bool) -> None:
    cv2.ellipse(
        canvas,
        (_px(center[0]), _px(center[1])),
        (_px(axes[0]), _px(axes[1])),
        0,
        0,
        360,
        float(tone),
        -1 if fill else _px(1),
        cv2.LINE_AA,
    )


def _arc(
    canvas: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    start: float,
    end: float,
    tone: int,
    width: float,
) -> None:
    cv2.ellipse(
        canvas,
        (_px(center[0]), _px(center[1])),
        (_px(axes[0]), _px(axes[1])),
        0,
        start,
        end,
        float(tone),
        max(1, _px(width)),
        cv2.LINE_AA,
    )


def _line(canvas: np.ndarray, a: tuple[float, float], b: tuple[float, float], tone: int, width: float) -> None:
    cv2.line(canvas, (_px(a[0]), _px(a[1])), (_px(b[0]), _px(b[1])), float(tone), max(1, _px(width)), cv2.LINE_AA)
