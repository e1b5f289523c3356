"""Cached exports: a weights file is exported once per format and settings, then reused.

The pipeline uses this for its CPU fast path: `.pt` weights on the CPU run through
OpenVINO or ONNX Runtime, exported on first use into the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from exporters.checkpoint import verified_copy
from pipeline.core.errors import ModelError

log = logging.getLogger(__name__)

FAST_CPU_FORMATS = {"openvino": "_openvino_model", "onnx": ".onnx"}


def cache_root() -> Path:
    """Where exports are cached: $EMOTION_STREAM_CACHE or ~/.cache/emotion-stream."""
    return Path(os.environ.get("EMOTION_STREAM_CACHE", Path.home() / ".cache" / "emotion-stream"))


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, or of every file under a folder in name order, hex."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def cached_cpu_export(weights: Path, fmt: str) -> Path:
    """The `fmt` export (openvino or onnx, dynamic shapes, FP32) of `.pt` weights, built once."""
    if fmt not in FAST_CPU_FORMATS:
        raise ModelError(f"unknown CPU backend {fmt!r}: use one of {', '.join(FAST_CPU_FORMATS)} or pytorch")
    with verified_copy(weights) as checked:
        folder = cache_root() / "exports" / f"{file_digest(checked)[:16]}-{fmt}-dynamic"
        artifact = folder / f"{weights.stem}{FAST_CPU_FORMATS[fmt]}"
        if not artifact.exists():
            _export_into(checked, weights.name, fmt, folder)
    return artifact


def _export_into(weights: Path, name: str, fmt: str, folder: Path) -> None:
    """Export `weights` (a checked copy) as `name` in a private staging folder, then move it to `folder`."""
    log.info("exporting %s to %s for the CPU fast path (once; cached in %s)", name, fmt, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        shutil.copy2(weights, staging / name)
        _export(staging / name, fmt)
        (staging / name).unlink()
        try:
            staging.rename(folder)
        except OSError:  # another process finished the same export first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _export(weights: Path, fmt: str) -> Path:
    from ultralytics import YOLO

    try:
        model = YOLO(str(weights), task="detect")
        return Path(model.export(format=fmt, dynamic=True, simplify=True, verbose=False))
    except Exception as exc:  # the exporter raises many types
        raise ModelError(f"cannot export {weights.name} to {fmt}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
