"""Cached exports: a weights file is exported once per format and settings, then reused.

The pipeline uses this for its CPU fast path: `.pt` weights on the CPU run through
OpenVINO or ONNX Runtime where installed, exported on first use into the cache (a log
line before and one after, with the time it took).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from exporters.checkpoint import verified_copy
from exporters.progress import ExportProgress
from pipeline.core.errors import ConfigError, ModelError

EXPORT_STEM = "model"
"""What the exporter is given the weights as: cached artifacts are named after this, not after the user's
file, so the same weights under any file name find the same export."""
FAST_CPU_FORMATS = {"openvino": f"{EXPORT_STEM}_openvino_model", "onnx": f"{EXPORT_STEM}.onnx"}
"""Each CPU fast-path format and the artifact its export writes."""


def cache_root() -> Path:
    """Where exports are cached: $EMOTION_STREAM_CACHE or ~/.cache/emotion-stream; ConfigError when that is not a
    folder (or a place one can be made)."""
    named = os.environ.get("EMOTION_STREAM_CACHE")
    root = Path(named) if named else Path.home() / ".cache" / "emotion-stream"
    blocking = next((path for path in (root, *root.parents) if path.exists()), None)
    if blocking is not None and not blocking.is_dir():
        where = "EMOTION_STREAM_CACHE" if named else "the cache folder"
        raise ConfigError(f"{where} {root} cannot be a folder: {blocking} is a file")
    return root


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
    """The `fmt` export (openvino or onnx, dynamic shapes, FP32) of `.pt` weights, built once.

    The cache is keyed by the weights' content alone: renamed or copied weights reuse the export."""
    if fmt not in FAST_CPU_FORMATS:
        raise ModelError(f"unknown CPU backend {fmt!r}: use one of {', '.join(FAST_CPU_FORMATS)} or pytorch")
    with verified_copy(weights) as checked:
        folder = cache_root() / "exports" / f"{file_digest(checked)[:16]}-{fmt}-dynamic"
        artifact = folder / FAST_CPU_FORMATS[fmt]
        if not artifact.exists():
            progress = ExportProgress.started(weights.name, fmt, f"for the CPU fast path (once; cached in {folder})")
            _export_into(checked, fmt, folder, weights.name)
            progress.finished(artifact)
    if not artifact.exists():
        raise ModelError(f"the {fmt} export of {weights} did not appear in the cache at {folder}")
    return artifact


def _export_into(weights: Path, fmt: str, folder: Path, name: str) -> None:
    """Export `weights` (a checked copy of the user's file `name`) in a private staging folder, then
    publish it as `folder`.

    Publishing is one rename. When `folder` already exists, another process published the same
    export first (its artifact is used) or it is left over without the artifact (an older
    version's layout): then it is moved aside and replaced."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        shutil.copy2(weights, staging / f"{EXPORT_STEM}.pt")
        _export(staging / f"{EXPORT_STEM}.pt", fmt, name)
        (staging / f"{EXPORT_STEM}.pt").unlink()
        if not _published(staging, folder) and not (folder / FAST_CPU_FORMATS[fmt]).exists():
            _discard(folder)
            _published(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _published(staging: Path, folder: Path) -> bool:
    """Rename `staging` to `folder`; False when `folder` exists already."""
    try:
        staging.rename(folder)
    except OSError:
        return False
    return True


def _discard(folder: Path) -> None:
    """Move a stale cache folder aside (atomically, so no reader sees it half deleted), then delete it."""
    discarded = Path(tempfile.mkdtemp(prefix=".discarded-", dir=folder.parent))
    try:
        folder.rename(discarded / folder.name)
    except OSError:  # another process replaced it first
        pass
    shutil.rmtree(discarded, ignore_errors=True)


def _export(weights: Path, fmt: str, name: str) -> Path:
    """Export `weights` next to themselves; ModelError naming the user's file `name` when the exporter fails."""
    from ultralytics import YOLO

    try:
        model = YOLO(str(weights), task="detect")
        return Path(model.export(format=fmt, dynamic=True, simplify=True, verbose=False))
    except Exception as exc:  # the exporter raises many types
        raise ModelError(f"cannot export {name} to {fmt}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
