"""Loading any model artifact through ultralytics' `AutoBackend`, with errors a user can act on.

Only the formats emotion-stream documents are loaded: `.pt` checkpoints (checked first, see
`exporters.checkpoint`), ONNX, OpenVINO folders and TensorRT engines. Others, TorchScript
among them (it carries code and pickles of its own), are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from ultralytics.nn.autobackend import AutoBackend

from exporters.checkpoint import verified_copy
from pipeline.core.errors import ModelError

SUPPORTED_FORMATS = ("pt", "onnx", "openvino", "engine")
"""AutoBackend's names of the formats emotion-stream loads."""


def torch_device(device: str) -> torch.device:
    """`device` as a torch device; ModelError for unknown names or CUDA missing."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}: use cpu or cuda:N") from None


def model_format(weights: Path) -> str:
    """The format ultralytics reads `weights` as (one of SUPPORTED_FORMATS); ModelError otherwise."""
    if not weights.exists():
        raise ModelError(f"weights not found: {weights}")
    found = AutoBackend._model_type(str(weights))
    if found not in SUPPORTED_FORMATS:
        raise ModelError(f"{weights}: {found or 'unknown'} models are not loaded; use .pt, .onnx, an OpenVINO "
                         "folder (*_openvino_model) or a TensorRT .engine")
    return found


@contextmanager
def loadable_weights(weights: Path) -> Iterator[Path]:
    """`weights` as ultralytics may open them: `.pt` checked and copied privately (so the file cannot be
    swapped after the check), other supported formats as they are; ModelError for anything else."""
    if model_format(weights) == "pt":
        with verified_copy(weights) as copy:
            yield copy
    else:
        yield weights


def load_backend(weights: Path, device: torch.device, half: bool = False) -> AutoBackend:
    """The weights loaded for detection on `device`; ModelError naming the file otherwise."""
    try:
        with loadable_weights(weights) as readable:
            backend = AutoBackend(str(readable), device=device, fp16=half, fuse=True, verbose=False, end2end=False)
    except ModelError:
        raise
    except Exception as exc:  # AutoBackend raises many types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load weights {weights}: {reason}") from None
    task = getattr(backend, "task", None) or getattr(getattr(backend, "model", None), "task", None)
    if task not in (None, "detect"):
        raise ModelError(f"{weights} is a {task} model; emotion-stream needs a detection model")
    if getattr(backend, "end2end", False):
        raise ModelError(f"{weights} is an end-to-end export without per-class scores; export it with end2end=False")
    return backend
