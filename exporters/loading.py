"""Loading any model artifact through ultralytics' `AutoBackend`, with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import torch
from ultralytics.nn.autobackend import AutoBackend

from pipeline.core.errors import ModelError


def torch_device(device: str) -> torch.device:
    """`device` as a torch device; ModelError for unknown names or CUDA missing."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}: use cpu or cuda:N") from None


def load_backend(weights: Path, device: torch.device, half: bool = False) -> AutoBackend:
    """The weights (any format) loaded for detection on `device`; ModelError naming the file otherwise."""
    if not weights.exists():
        raise ModelError(f"weights not found: {weights}")
    try:
        backend = AutoBackend(str(weights), device=device, fp16=half, fuse=True, verbose=False, end2end=False)
    except Exception as exc:  # AutoBackend raises many types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load weights {weights}: {reason}") from None
    task = getattr(backend, "task", None) or getattr(getattr(backend, "model", None), "task", None)
    if task not in (None, "detect"):
        raise ModelError(f"{weights} is a {task} model; emotion-stream needs a detection model")
    if getattr(backend, "end2end", False):
        raise ModelError(f"{weights} is an end-to-end export without per-class scores; export it with end2end=False")
    return backend
