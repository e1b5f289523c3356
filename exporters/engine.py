"""TensorRT engines: availability checks and the bare plan a plain TensorRT runtime expects.

Ultralytics writes `.engine` files as a 4-byte little-endian length, a JSON metadata block,
then the serialized plan. Triton's TensorRT backend (and any plain TensorRT runtime) needs
the plan alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.errors import ModelError


def require_tensorrt() -> str:
    """The installed TensorRT version; ModelError saying what is missing otherwise."""
    import torch

    try:
        import tensorrt
    except ImportError:
        raise ModelError(
            "TensorRT export needs the tensorrt package on an NVIDIA GPU machine: "
            "pip install 'emotion-stream[tensorrt]' (see README, TensorRT)"
        ) from None
    if not torch.cuda.is_available():
        raise ModelError("TensorRT export needs an NVIDIA GPU with CUDA; none is visible to PyTorch here")
    return str(tensorrt.__version__)


def split_engine(data: bytes) -> tuple[dict | None, bytes]:
    """(ultralytics metadata or None, bare TensorRT plan) of an .engine file's bytes."""
    if len(data) > 4:
        length = int.from_bytes(data[:4], byteorder="little", signed=True)
        if 0 < length < len(data) - 4 and data[4:5] == b"{":
            try:
                return json.loads(data[4 : 4 + length].decode()), data[4 + length :]
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
    return None, data


def write_bare_plan(engine: Path, plan_path: Path) -> Path:
    """Write `engine`'s plan without the ultralytics header to `plan_path`."""
    _metadata, plan = split_engine(engine.read_bytes())
    plan_path.write_bytes(plan)
    return plan_path
