"""The input size a model runs at: by default the one it states, checked once when it is loaded.

Unset (`model.imgsz: auto`), the size is the model's own: the sidecar of an emotion-stream
export, the fixed input of an ONNX or OpenVINO export, an ultralytics export's metadata, or a
`.pt` checkpoint's train_args (ultralytics' 640 where they name none), as `YOLO.predict` does.
A size that differs from the model's runs, with one warning naming both: a model run at
another size than it learned finds other faces, and says so confidently.

imgsz must be at most MAX_IMGSZ, a multiple of the model's stride, the very size an export
with a fixed input was made for, and the model must answer a probe at that size with
detections: [batch, 4 + classes, boxes]; otherwise one line, not a traceback mid-run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from ultralytics.nn.autobackend import AutoBackend, default_class_names

from exporters.metadata import ExportMetadata
from pipeline.core.config import MAX_IMGSZ
from pipeline.core.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

DEFAULT_IMGSZ = 640
"""ultralytics' default input size: what a model that states none runs at."""

MIN_STRIDE = 32
"""The largest stride of every ultralytics detector (P6 models: 64)."""


def check_imgsz_range(imgsz: int, name: str) -> None:
    """ConfigError unless 1 <= imgsz <= MAX_IMGSZ; `name` is the flag or key it came from."""
    if not 1 <= imgsz <= MAX_IMGSZ:
        raise ConfigError(f"{name} must be between 1 and {MAX_IMGSZ}, got {imgsz}")


def model_stride(backend: AutoBackend) -> int:
    """The model's largest stride (32 where the format does not say)."""
    stride = backend.stride
    return int(max(stride, MIN_STRIDE)) if isinstance(stride, int) else MIN_STRIDE


def check_imgsz_stride(imgsz: int, stride: int, name: str) -> None:
    """ConfigError unless imgsz is a positive multiple of `stride`."""
    if imgsz < stride or imgsz % stride:
        lower, upper = max(stride, imgsz // stride * stride), (imgsz // stride + 1) * stride
        raise ConfigError(f"{name} {imgsz} is not a multiple of the model's stride {stride}: use {lower} or {upper}")


def fixed_input_shape(backend: AutoBackend) -> list[int | None] | None:
    """[batch, channels, height, width] of an ONNX or OpenVINO model, None for dimensions it leaves
    dynamic; None for other formats."""
    if backend.format == "onnx" and getattr(backend, "session", None) is not None:
        return [dim if isinstance(dim, int) else None for dim in backend.session.get_inputs()[0].shape]
    if backend.format == "openvino":
        shape = backend.ov_compiled_model.input().get_partial_shape()
        return [dim.get_length() if dim.is_static else None for dim in shape]
    return None


def has_class_names(backend: AutoBackend) -> bool:
    """False when the model carried no ultralytics metadata: ultralytics then names 999 classes class0..class998."""
    return backend.names != default_class_names()


def check_model_input(backend: AutoBackend, weights: Path, imgsz: int, classes: int, name: str) -> None:
    """ConfigError when `imgsz` is not what a fixed-size export takes; ModelError when the model does
    not run at it, does not answer with detections or names no classes (no ultralytics metadata)."""
    shape = fixed_input_shape(backend) or [None, 3, None, None]
    if len(shape) != 4:
        raise ModelError(f"{weights} takes {len(shape)}-dimensional input; a detector takes [batch, 3, height, width]")
    batch, channels, height, width = shape
    if (height, width) != (None, None) and (height, width) != (imgsz, imgsz):
        fixed = f"{height}x{width}" if height and width else f"a fixed {'height' if height else 'width'}"
        raise ConfigError(f"{name} {imgsz} does not fit {weights}: it was exported for {fixed} input; "
                          f"use {height or width} or export it again")
    dtype = torch.float16 if backend.fp16 else torch.float32
    probe = torch.zeros((batch or 1, channels or 3, imgsz, imgsz), dtype=dtype, device=backend.device)
    try:
        with torch.inference_mode():
            output = backend(probe)
    except Exception as exc:  # runtimes raise many types for inputs a model cannot take
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{weights} does not run at {name} {imgsz}: {reason[:200]}") from None
    output = output[0] if isinstance(output, (list, tuple)) else output
    expected = 4 + classes
    got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if not has_class_names(backend):
        raise ModelError(f"{weights} has no ultralytics metadata (no class names): it answers {got}; "
                         "use weights trained or exported by emotion-stream or ultralytics")
    if not isinstance(output, torch.Tensor) or output.ndim != 3 or output.shape[1] != expected:
        raise ModelError(f"{weights} is not an ultralytics detector with {classes} classes: it answers {got}, "
                         f"a detector [batch, {expected}, boxes]")


@dataclass(frozen=True)
class StatedSize:
    """The input size a model states about itself, and where it says so (None: it states none)."""

    imgsz: int | None
    origin: str


def stated_size(backend: AutoBackend, sidecar: ExportMetadata | None) -> StatedSize:
    """What the loaded model says its input size is (the long side of a rectangular one)."""
    if sidecar is not None:
        return StatedSize(sidecar.imgsz, "its export sidecar")
    shape = fixed_input_shape(backend)
    if shape and len(shape) == 4 and shape[2] and shape[3]:
        return StatedSize(max(shape[2], shape[3]), "its fixed input shape")
    if backend.format == "pt":
        imgsz = (getattr(backend.model, "args", None) or {}).get("imgsz")
        return StatedSize(_long_side(imgsz), "its train_args")
    return StatedSize(_long_side(getattr(backend, "imgsz", None)), "its export metadata")


def resolve_imgsz(requested: int | None, stated: StatedSize) -> int:
    """The size to run at: `requested`, or the model's own when None (`DEFAULT_IMGSZ` when it states none)."""
    return requested if requested is not None else stated.imgsz or DEFAULT_IMGSZ


def explain_imgsz(requested: int | None, stated: StatedSize, weights: Path, name: str) -> None:
    """Log where the size came from when it is not the model's own: a warning when `requested` differs from it."""
    if requested is None and stated.imgsz is None:
        log.info("%s states no input size: running at %d, ultralytics' default", weights.name, DEFAULT_IMGSZ)
    elif requested is not None and stated.imgsz not in (None, requested):
        log.warning("%s %d differs from the %d %s states (%s): a model run at another size than its own can find "
                    "other faces with confidence; leave %s unset to run at %d", name, requested, stated.imgsz,
                    weights.name, stated.origin, name, stated.imgsz)


def _long_side(imgsz: object) -> int | None:
    if isinstance(imgsz, int) and not isinstance(imgsz, bool):
        return imgsz
    if isinstance(imgsz, (list, tuple)) and imgsz and all(isinstance(side, int) for side in imgsz):
        return max(imgsz)
    return None
