"""`emotion-stream export`: trained weights to deployable artifacts, on ultralytics' exporter.

Every artifact gets a sidecar (see `metadata`). Engines always get `dynamic=True` with
`batch=N`: without `batch` ultralytics builds a dynamic engine whose maximum batch is 1
(ultralytics issues #9177, #17541).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from exporters.cache import file_digest
from exporters.engine import require_tensorrt
from exporters.input_size import (
    check_imgsz_range,
    check_imgsz_stride,
    explain_imgsz,
    model_stride,
    resolve_imgsz,
    stated_size,
)
from exporters.loading import load_backend, loadable_weights, torch_device
from exporters.metadata import ExportMetadata, write_sidecar
from exporters.progress import ExportProgress
from exporters.runtimes import FORMAT_MODULES, require_modules
from exporters.triton import build_repository, check_model_name
from pipeline.core.errors import ConfigError, ModelError, SinkError
from pipeline.core.yaml_loading import load_yaml_file

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino", "engine", "triton")


@dataclass(frozen=True)
class ExportRequest:
    """One export, as the command line describes it."""

    weights: Path
    format: str
    imgsz: int | None = None
    """Input size; None: the size the weights were trained at (their train_args)."""
    batch: int = 8
    dynamic: bool = True
    half: bool = False
    int8: bool = False
    calib: Path | None = None
    """data.yaml whose training images calibrate INT8."""
    out: Path | None = None
    workspace_gb: float = 4.0
    triton_backend: str = "auto"
    name: str = "emotion"


def resolved(request: ExportRequest) -> ExportRequest:
    """`request` checked, with its input size decided: the one asked for, else the weights' own (one warning when
    the two differ)."""
    _check_weights(request.weights)
    with loadable_weights(request.weights) as weights:
        backend = load_backend(weights, torch_device("cpu"))
        stated = stated_size(backend, None)
        imgsz = resolve_imgsz(request.imgsz, stated)
        check_imgsz_range(imgsz, "--imgsz")
        check_imgsz_stride(imgsz, model_stride(backend), "--imgsz")
        explain_imgsz(request.imgsz, stated, request.weights, "--imgsz")
    return dataclasses.replace(request, imgsz=imgsz)


def export(request: ExportRequest, command: str = "") -> Path:
    """Run the export and write the sidecar; returns the artifact (file, folder or Triton repository).

    The exporter works on a checked private copy of the weights; what it writes moves into `out`."""
    request = resolved(request) if request.imgsz is None else request  # the command line resolved it already
    _validate(request)
    out = (request.out or request.weights.parent).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".emotion-stream-probe-")  # writable, before minutes of work
        probe.close()
    except OSError as exc:
        raise SinkError(f"cannot write the export into {out}: {exc.strerror or exc}") from None
    with loadable_weights(request.weights) as weights:
        names = _class_names(weights, request.imgsz)
        progress = ExportProgress.started(request.weights.name, request.format, f"({_precision(request)}, imgsz "
                                          f"{request.imgsz}, batch {request.batch}) into {out}")
        if request.format == "triton":
            artifact = _triton(request, weights, out, names)
        else:
            artifact = _ultralytics_export(request, weights, request.format, out)
        source_sha256 = file_digest(weights)
    write_sidecar(artifact, ExportMetadata(
        format=request.format, class_names=names, imgsz=request.imgsz,
        max_batch=request.batch, dynamic=request.dynamic or request.format in ("engine", "triton"),
        precision=_precision(request), source_weights=str(request.weights),
        source_sha256=source_sha256, command=command,
    ))
    progress.finished(artifact)
    return artifact


def _check_weights(weights: Path) -> None:
    if not weights.is_file() or weights.suffix != ".pt":
        raise ModelError(f"export needs trained .pt weights; not found or not .pt: {weights}")


def _validate(request: ExportRequest) -> None:
    if request.format not in FORMATS:
        raise ConfigError(f"unknown format {request.format!r}: use one of {', '.join(FORMATS)}")
    _check_weights(request.weights)
    if request.imgsz is not None:
        check_imgsz_range(request.imgsz, "--imgsz")
    check_model_name(request.name)
    if request.int8 and request.calib is None:
        raise ConfigError("--int8 needs --calib DATA: a data.yaml whose training images calibrate the quantisation")
    if request.int8 and request.half:
        raise ConfigError("choose --half or --int8, not both")
    if request.batch < 1:
        raise ConfigError("--batch must be at least 1")
    if request.format == "onnx" and request.half:
        import torch

        if not torch.cuda.is_available():
            raise ModelError("FP16 ONNX export needs a CUDA GPU; on the CPU use --format openvino --half")
    if request.format in ("engine",) or (request.format == "triton" and request.triton_backend == "tensorrt"):
        require_tensorrt()
    if request.format in FORMAT_MODULES:
        require_modules(request.format, f"--format {request.format}")
    if request.format == "triton" and request.triton_backend == "onnx":
        require_modules("onnx", "--triton-backend onnx")


def _ultralytics_export(request: ExportRequest, weights: Path, fmt: str, out: Path) -> Path:
    """Export `weights` (a private copy) with ultralytics, then move the artifact into `out`."""
    from ultralytics import YOLO

    args = {"format": fmt, "imgsz": request.imgsz, "batch": request.batch, "dynamic": request.dynamic, "verbose": False}
    if fmt in ("onnx", "engine"):
        args["simplify"] = True
    if fmt == "engine":
        args |= {"dynamic": True, "workspace": request.workspace_gb, "device": 0}
    if request.half:
        args["quantize"] = 16
    if request.int8:
        args |= {"quantize": 8, "data": str(_training_images_for_calibration(request.calib, weights.parent))}
    try:
        artifact = Path(YOLO(str(weights), task="detect").export(**args))
    except Exception as exc:  # the exporter raises many types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{fmt} export of {weights.name} failed: {reason}") from None
    return _move_into(artifact, out)


def _move_into(artifact: Path, out: Path) -> Path:
    """`artifact` moved into `out`, replacing an earlier export of the same name."""
    target = out / artifact.name
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    shutil.move(str(artifact), target)
    return target


def _training_images_for_calibration(data_yaml: Path, folder: Path) -> Path:
    """A copy of `data_yaml` whose val split is its train split: ultralytics calibrates INT8 on
    the val images, and calibration should see the training distribution."""
    import yaml

    data = load_yaml_file(data_yaml, "data set file")
    if not isinstance(data, dict) or "train" not in data:
        raise ConfigError(f"{data_yaml}: no train split to calibrate INT8 with")
    data.setdefault("path", str(Path(data_yaml).parent.resolve()))
    data["val"] = data["train"]
    calibration = folder / "int8-calibration.yaml"
    calibration.write_text(yaml.safe_dump(data, sort_keys=False))
    return calibration


def _triton(request: ExportRequest, weights: Path, out: Path, names: list[str]) -> Path:
    backend = request.triton_backend
    if backend == "auto":
        try:
            require_tensorrt()
            backend = "tensorrt"
        except ModelError:
            require_modules("onnx", "a Triton repository without TensorRT (the ONNX backend)")
            backend = "onnx"
    model_file = _ultralytics_export(request, weights, "engine" if backend == "tensorrt" else "onnx", out)
    repo = out / "triton"
    config, input_name, output_name = build_repository(model_file, repo, request.name, request.batch, len(names),
                                                        request.imgsz)
    log.info("Triton repository %s (%s backend; input %s, output %s)", repo, backend, input_name, output_name)
    return repo / request.name


def _class_names(weights: Path, imgsz: int) -> list[str]:
    """The model's class names, after checking it is a detection model that loads and takes `imgsz`."""
    backend = load_backend(weights, torch_device("cpu"))
    check_imgsz_stride(imgsz, model_stride(backend), "--imgsz")
    return [backend.names[i] for i in sorted(backend.names)]


def _precision(request: ExportRequest) -> str:
    if request.int8:
        return "int8"
    if request.half:
        return "bf16" if request.format == "openvino" else "fp16"
    return "fp32"
