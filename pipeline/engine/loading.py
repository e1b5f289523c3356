"""The detectors a configuration asks for: one per device, the CPU fast path for .pt weights on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

from exporters.cache import cached_cpu_export
from pipeline.core.config import ModelConfig
from pipeline.core.errors import ModelError
from pipeline.engine.cpu_backend import CpuBackend, resolve_cpu_backend
from pipeline.engine.detector import DetectorSettings, EmotionDetector, LetterboxPlace
from pipeline.engine.forward import CompileMode

log = logging.getLogger(__name__)


def detector_settings(model: ModelConfig, batch: int) -> DetectorSettings:
    """`DetectorSettings` from the `model` section and the batch size."""
    return DetectorSettings(
        imgsz=None if model.imgsz == "auto" else model.imgsz,
        conf=model.conf,
        iou=model.iou,
        max_det=model.max_det,
        agnostic_nms=model.agnostic_nms,
        half=None if model.half == "auto" else model.half == "true",
        compile=CompileMode(model.compile),
        letterbox=LetterboxPlace(model.letterbox),
        batch=batch,
    )


def load_detector(model: ModelConfig, batch: int, device: str | None = None,
                  explain_size: bool = True) -> EmotionDetector:
    """The detector for `model` on `device` (default: the first configured), taking the CPU fast path
    (an OpenVINO or ONNX export, made once and cached) for .pt weights on the CPU where it is installed.
    `explain_size`: say when the input size is not the model's own (once per call, whatever is loaded)."""
    if not model.weights:
        raise ModelError("no weights given: pass --weights or set model.weights in the config")
    device = device or (model.devices or ["cpu"])[0]
    settings = detector_settings(model, batch)
    weights = Path(model.weights)
    if weights.suffix != ".pt" or device != "cpu" or model.cpu_backend == CpuBackend.PYTORCH:
        return EmotionDetector(weights, device, settings, explain_size=explain_size)
    source_model = EmotionDetector(weights, "cpu", settings, explain_size=explain_size)  # checks before exporting
    backend = resolve_cpu_backend(model.cpu_backend)
    if backend is CpuBackend.PYTORCH:
        return source_model
    fast = EmotionDetector(cached_cpu_export(weights, backend.value), "cpu", source_model.settings,
                           source_model.model_id, explain_size=False)
    log.info("CPU fast path: %s weights run on %s (%s)", weights.name, fast.format, fast.weights)
    return fast


def load_detectors(model: ModelConfig, batch: int) -> list[EmotionDetector]:
    """One detector per configured device (`model.device: cuda:0,cuda:1`), each an engine lane."""
    devices = model.devices or ["cpu"]
    return [load_detector(model, batch, device, explain_size=lane == 0) for lane, device in enumerate(devices)]
