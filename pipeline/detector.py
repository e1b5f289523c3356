"""Batched emotion detection on any ultralytics detection model, full class scores kept.

Pre- and post-processing mirror `YOLO.predict` step for step (letterbox rules, NMS, box
scaling), so results match it; the differences are batching across frames and keeping
every kept face's whole class-score vector, not only its argmax.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ultralytics.data.augment import LetterBox
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.utils import ops
from ultralytics.utils.nms import non_max_suppression

from exporters.cache import file_digest
from exporters.metadata import read_sidecar
from pipeline.errors import ModelError
from pipeline.types import Face

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorSettings:
    """How raw model output becomes faces."""

    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 100
    agnostic_nms: bool = True
    """One box per face: suppress overlapping boxes across classes (the scores keep every class)."""


class EmotionDetector:
    """Loads a detection model through `AutoBackend` and runs frames in batches."""

    def __init__(
        self,
        weights: str | Path,
        device: str = "cpu",
        settings: DetectorSettings | None = None,
        model_id: str | None = None,
    ) -> None:
        """`model_id` names the model in outputs; by default the weights' name and content hash."""
        self.weights = Path(weights)
        self.settings = settings or DetectorSettings()
        self.device = _torch_device(device)
        self.backend = _load_backend(self.weights, self.device)
        self.export_metadata = read_sidecar(self.weights)
        if self.export_metadata and self.format == "openvino" and self.export_metadata.precision == "fp32":
            _openvino_fp32(self.backend, self.weights)
        self.max_batch = self.export_metadata.max_batch if self.export_metadata else None
        self.names: list[str] = [self.backend.names[i] for i in sorted(self.backend.names)]
        self.model_id = model_id or model_id_for(self.weights)
        self.stride = int(max(self.backend.stride, 32) if isinstance(self.backend.stride, int) else 32)
        self._rect_ok = self.backend.format == "pt" or bool(getattr(self.backend, "dynamic", False))

    @property
    def format(self) -> str:
        """The runtime format AutoBackend picked (pt, onnx, openvino, engine, ...)."""
        return str(self.backend.format)

    def detect(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces per image, boxes in each image's own pixels; images are uint8 BGR.

        Batches larger than an export's maximum (its sidecar says) run in chunks.
        """
        if self.max_batch and len(images) > self.max_batch:
            return [faces for start in range(0, len(images), self.max_batch)
                    for faces in self.detect(images[start : start + self.max_batch])]
        if not images:
            return []
        batch = self._preprocess(images)
        with torch.inference_mode():
            raw = self.backend(batch)
            raw = raw[0] if isinstance(raw, (list, tuple)) else raw
            kept, indices = non_max_suppression(
                raw,
                self.settings.conf,
                self.settings.iou,
                agnostic=self.settings.agnostic_nms,
                max_det=self.settings.max_det,
                return_idxs=True,
            )
        return [
            self._faces(raw[i], kept[i], indices[i], batch.shape[2:], image.shape)
            for i, image in enumerate(images)
        ]

    def _preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        same_shapes = len({im.shape for im in images}) == 1
        letterbox = LetterBox(self.settings.imgsz, auto=same_shapes and self._rect_ok, stride=self.stride)
        stacked = np.stack([letterbox(image=im) for im in images])
        tensor = torch.from_numpy(stacked).to(self.device).permute(0, 3, 1, 2).contiguous().flip(1)
        return tensor.half().div_(255) if self.backend.fp16 else tensor.float().div_(255)

    def _faces(
        self,
        raw: torch.Tensor,
        kept: torch.Tensor,
        indices: torch.Tensor,
        input_shape: torch.Size,
        image_shape: tuple[int, ...],
    ) -> list[Face]:
        if not len(kept):
            return []
        boxes = ops.scale_boxes(input_shape, kept[:, :4].clone(), image_shape).cpu().numpy()
        class_scores = raw[4 : 4 + len(self.names), indices.long()].T.float().cpu().numpy()
        confidences = kept[:, 4].float().cpu().numpy()
        classes = kept[:, 5].long().cpu().numpy()
        return [
            Face(
                box=tuple(float(v) for v in boxes[k]),
                emotion=self.names[classes[k]],
                score=float(confidences[k]),
                scores={name: float(class_scores[k, c]) for c, name in enumerate(self.names)},
            )
            for k in range(len(kept))
        ]


def model_id_for(weights: Path) -> str:
    """A short, stable id of a weights file or export folder: name plus content hash."""
    return f"{weights.stem}-{file_digest(weights)[:8]}"


def _torch_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}: use cpu or cuda:N") from None


def _openvino_fp32(backend: AutoBackend, weights: Path) -> None:
    """Recompile an OpenVINO model with FP32 inference (the CPU plugin otherwise picks bf16 where it can).

    AutoBackend has no precision option, so this replaces its compiled model in place.
    """
    import openvino as ov

    core = ov.Core()
    xml = weights if weights.is_file() else next(weights.glob("*.xml"))
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": ov.Type.f32}
    openvino_backend = backend.backend
    openvino_backend.compile_model = functools.partial(core.compile_model, device_name="CPU", config=config)
    openvino_backend.ov_compiled_model = openvino_backend.compile_model(core.read_model(str(xml)))


def _load_backend(weights: Path, device: torch.device) -> AutoBackend:
    if not weights.exists():
        raise ModelError(f"weights not found: {weights}")
    try:
        backend = AutoBackend(str(weights), device=device, fp16=False, fuse=True, verbose=False, end2end=False)
    except Exception as exc:  # AutoBackend raises many types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load weights {weights}: {reason}") from None
    task = getattr(backend, "task", None) or getattr(getattr(backend, "model", None), "task", None)
    if task not in (None, "detect"):
        raise ModelError(f"{weights} is a {task} model; emotion-stream needs a detection model")
    if getattr(backend, "end2end", False):
        raise ModelError(f"{weights} is an end-to-end export without per-class scores; export it with end2end=False")
    return backend
