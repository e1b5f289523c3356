"""Batched emotion detection on any ultralytics detection model, full class scores kept.

Pre- and post-processing mirror `YOLO.predict` step for step (letterbox rules, NMS, box
scaling), so results match it; the differences are batching across frames, keeping every
kept face's whole class-score vector, and returning a batch's faces as one `Detections`
filled by a single device-to-host copy.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.utils.nms import non_max_suppression

from exporters.cache import file_digest
from exporters.input_size import (
    check_imgsz_range,
    check_imgsz_stride,
    check_model_input,
    explain_imgsz,
    model_stride,
    resolve_imgsz,
    stated_size,
)
from exporters.loading import load_backend, torch_device
from exporters.metadata import read_sidecar
from pipeline.core.quiet import quiet_libraries
from pipeline.engine.batch import Detections, FrameInfo
from pipeline.engine.forward import CompileMode, ForwardPass
from pipeline.engine.preprocess import (
    CpuLetterbox,
    DeviceLetterbox,
    LetterboxPlan,
    ModelInput,
    normalise,
    plan_frames,
    shape_groups,
)

log = logging.getLogger(__name__)

IMGSZ_NAME = "--imgsz/model.imgsz"


class LetterboxPlace(str, Enum):
    """Where frames are letterboxed (`model.letterbox`)."""

    AUTO = "auto"
    """On the device for CUDA, else OpenCV on the CPU."""
    CPU = "cpu"
    DEVICE = "device"


@dataclass(frozen=True)
class DetectorSettings:
    """How frames become model input and raw model output becomes faces."""

    imgsz: int | None = None
    """Input size; None: the model's own (see `exporters.input_size`)."""
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 100
    agnostic_nms: bool = True
    """One box per face: suppress overlapping boxes across classes (the scores keep every class)."""
    half: bool | None = None
    """FP16 for .pt weights; None: on CUDA yes, elsewhere no."""
    compile: CompileMode = CompileMode.OFF
    letterbox: LetterboxPlace = LetterboxPlace.AUTO
    batch: int = 8
    """The batch size the forward pass is built for (CUDA graphs and compiled code pad to it)."""


class EmotionDetector:
    """Loads a detection model through `AutoBackend` and runs frames in batches.

    Three steps, so that a staged engine can overlap them: `prepare` (letterbox and upload),
    `infer` (forward, NMS, one device-to-host copy, boxes back to source pixels) and, for
    callers that need neither, `detect` doing both.
    """

    def __init__(
        self,
        weights: str | Path,
        device: str = "cpu",
        settings: DetectorSettings | None = None,
        model_id: str | None = None,
        explain_size: bool = True,
    ) -> None:
        """`model_id` names the model in outputs; by default the weights' name and content hash. `explain_size`:
        log when the input size is not the model's own (off for the second and later loads of one model)."""
        self.weights = Path(weights)
        self.settings = settings or DetectorSettings()
        self.device = torch_device(device)
        half = self.settings.half if self.settings.half is not None else self.device.type == "cuda"
        with quiet_libraries():  # ultralytics' "Loading ... for ... inference" lines: called from Python too
            self.backend = load_backend(self.weights, self.device, half and self.weights.suffix == ".pt")
        self.export_metadata = read_sidecar(self.weights)
        if self.export_metadata and self.format == "openvino" and self.export_metadata.precision == "fp32":
            _openvino_fp32(self.backend, self.weights)
        self.max_batch = self.export_metadata.max_batch if self.export_metadata else None
        self.names: list[str] = [self.backend.names[i] for i in sorted(self.backend.names)]
        self.model_id = model_id or model_id_for(self.weights)
        self.stride = model_stride(self.backend)
        self.stated_size = stated_size(self.backend, self.export_metadata)
        requested = self.settings.imgsz
        imgsz = resolve_imgsz(requested, self.stated_size)
        if requested is None and imgsz % self.stride:  # as ultralytics' check_imgsz: up to the stride
            imgsz = -(-imgsz // self.stride) * self.stride
            log.warning("%s states input size %d, not a multiple of its stride %d: running at %d", self.weights.name,
                        self.stated_size.imgsz, self.stride, imgsz)
        self.settings = dataclasses.replace(self.settings, imgsz=imgsz)
        check_imgsz_range(self.settings.imgsz, IMGSZ_NAME)
        check_imgsz_stride(self.settings.imgsz, self.stride, IMGSZ_NAME)
        check_model_input(self.backend, self.weights, self.settings.imgsz, len(self.names), IMGSZ_NAME)
        if explain_size:
            explain_imgsz(requested, self.stated_size, self.weights, IMGSZ_NAME)
        self.forward = ForwardPass(self.backend, self.device, self.settings.compile, self.settings.batch,
                                   self.settings.imgsz)
        dynamic = self.backend.format == "pt" or bool(getattr(self.backend, "dynamic", False))
        self._rect_ok = dynamic and not self.forward.fixed_shape
        place = self.settings.letterbox
        on_device = place is LetterboxPlace.DEVICE or (place is LetterboxPlace.AUTO and self.device.type == "cuda")
        self._device_letterbox = DeviceLetterbox(self.device, self.fp16) if on_device else None
        self._cpu_letterbox = CpuLetterbox()

    @property
    def format(self) -> str:
        """The runtime format AutoBackend picked (pt, onnx, openvino, engine, ...)."""
        return str(self.backend.format)

    @property
    def fp16(self) -> bool:
        """True when the model takes FP16 input."""
        return bool(self.backend.fp16)

    @property
    def description(self) -> str:
        """Runtime, device, precision and preprocessing in a few words, for logs and benchmarks."""
        where = "device" if self._device_letterbox else "cpu"
        precision = f" {'fp16' if self.fp16 else 'fp32'}" if self.format == "pt" else ""
        return (f"{self.format}{precision} on {self.device}, letterbox on {where}"
                + (f", {self.forward.mode.value}" if self.forward.mode is not CompileMode.OFF else ""))

    def prepare(self, images: list[np.ndarray]) -> list[ModelInput]:
        """Letterbox and normalise uint8 BGR frames into the model's input on its device: one input per letterbox
        shape, each frame in its own plan whatever else is in the batch."""
        plans = plan_frames([image.shape[:2] for image in images], self.settings.imgsz, self.stride, self._rect_ok)
        inputs = []
        for positions in shape_groups(plans):
            group, group_plans = [images[i] for i in positions], [plans[i] for i in positions]
            if self._device_letterbox is not None:
                inputs.append(self._device_letterbox(group, group_plans, positions))
                continue
            batch = torch.from_numpy(self._cpu_letterbox(group, group_plans)).to(self.device)
            inputs.append(ModelInput(normalise(batch, self.fp16), group_plans, positions))
        return inputs

    def infer(self, model_inputs: list[ModelInput], frames: list[FrameInfo] | None = None) -> Detections:
        """Forward pass and NMS of each prepared input; boxes in each frame's own pixels (`frames` give sizes that
        differ from the prepared images, e.g. frames downscaled into shared memory)."""
        classes = len(self.names)
        with torch.inference_mode():
            by_position: dict[int, tuple[LetterboxPlan, torch.Tensor]] = {}
            for model_input in model_inputs:
                by_position.update(zip(model_input.positions, zip(model_input.plans, self._faces(model_input))))
            plans = [by_position[position][0] for position in range(len(by_position))]
            faces = [by_position[position][1] for position in range(len(by_position))]
            frames = frames or [FrameInfo("", i, 0.0, 0.0, plan.width, plan.height) for i, plan in enumerate(plans)]
            counts = np.array([len(found) for found in faces], np.int64)
            if not counts.sum():
                return Detections.empty(frames, classes)
            rows = torch.cat([found for found in faces if len(found)]).cpu().numpy()  # the batch's one copy to the host
        _to_source_pixels(rows, counts, plans, frames)
        return Detections.from_rows(frames, counts, rows, classes)

    def _faces(self, model_input: ModelInput) -> list[torch.Tensor]:
        """Per frame of one prepared input: its kept faces as rows [x1, y1, x2, y2, score, class, class scores...]
        in model-input pixels, on the device."""
        model_input.wait()
        tensor = model_input.tensor
        step = self.max_batch or len(tensor)
        raw = torch.cat([self.forward(tensor[start : start + step]) for start in range(0, len(tensor), step)])
        kept, indices = non_max_suppression(
            raw,
            self.settings.conf,
            self.settings.iou,
            agnostic=self.settings.agnostic_nms,
            max_det=self.settings.max_det,
            return_idxs=True,
        )
        classes = len(self.names)
        return [torch.cat([k[:, :6].float(), raw[i, 4 : 4 + classes, idx.long()].T.float()], 1) if len(k)
                else raw.new_zeros((0, 6 + classes), dtype=torch.float32)
                for i, (k, idx) in enumerate(zip(kept, indices))]

    def detect(self, images: list[np.ndarray], frames: list[FrameInfo] | None = None) -> Detections:
        """`prepare` then `infer`: the faces of uint8 BGR images."""
        if not images:
            return Detections.empty(frames or [], len(self.names))
        return self.infer(self.prepare(images), frames)


def _to_source_pixels(rows: np.ndarray, counts: np.ndarray, plans: list[LetterboxPlan], frames: list[FrameInfo]) -> None:
    """Boxes from model input to frame pixels in place: undo the padding and scale like
    ultralytics' `scale_boxes`, clip to the image, then scale to the frame's own size."""
    owner = np.repeat(np.arange(len(plans)), counts)
    geometry = np.array([
        (plan.left, plan.top, plan.new_w / plan.width, plan.new_h / plan.height, plan.width, plan.height,
         frame.width / plan.width, frame.height / plan.height)
        for plan, frame in zip(plans, frames)
    ], np.float32)[owner]
    left, top, gain_x, gain_y, width, height, to_frame_x, to_frame_y = geometry.T
    boxes = rows[:, :4]
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - left[:, None]) / gain_x[:, None]).clip(0, width[:, None])
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - top[:, None]) / gain_y[:, None]).clip(0, height[:, None])
    boxes[:, [0, 2]] *= to_frame_x[:, None]
    boxes[:, [1, 3]] *= to_frame_y[:, None]


def model_id_for(weights: Path) -> str:
    """A short, stable id of a weights file or export folder: name plus content hash."""
    return f"{weights.stem}-{file_digest(weights)[:8]}"


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
