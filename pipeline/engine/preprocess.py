"""Letterbox and normalise a batch of uint8 BGR frames into the model's input tensor.

The geometry is ultralytics' `LetterBox` rule for rule (scale to fit, pad with 114 to the
stride in rect mode or to a square, centred), so boxes map back exactly as in
`YOLO.predict`. Each frame gets its own plan, whatever shares its batch: its own rectangle
where the model takes any shape (as `YOLO.predict` runs one video), else the square `imgsz`;
frames of different shapes go through the model as separate groups, never padded to each
other. Two implementations share the geometry:

- `CpuLetterbox`: OpenCV's resize per frame, written straight into one batch array (the
  pixels ultralytics' `LetterBox` makes, without a per-frame padded copy and `np.stack`).
- `DeviceLetterbox`: frames go up as uint8 (from pinned memory, on a side stream on CUDA),
  then resize (bilinear, rounded like OpenCV's uint8 resize), pad, BGR to RGB and scaling
  to [0, 1] run on the device, one call per group of same-sized frames.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PAD_VALUE = 114


@dataclass(frozen=True)
class LetterboxPlan:
    """Where one frame lands in the model input: resized to (new_h, new_w) at (top, left)."""

    height: int
    width: int
    new_h: int
    new_w: int
    top: int
    left: int
    out_h: int
    out_w: int

    @property
    def resized(self) -> bool:
        """True when the frame is scaled, not only padded."""
        return (self.new_h, self.new_w) != (self.height, self.width)


def plan_letterbox(height: int, width: int, imgsz: int, stride: int, auto: bool) -> LetterboxPlan:
    """ultralytics' `LetterBox(imgsz, auto=auto, stride=stride)` geometry for a height x width frame."""
    ratio = min(imgsz / height, imgsz / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    dw, dh = imgsz - new_w, imgsz - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return LetterboxPlan(height, width, new_h, new_w, top, left, new_h + top + bottom, new_w + left + right)


def plan_frames(shapes: list[tuple[int, int]], imgsz: int, stride: int, rect: bool) -> list[LetterboxPlan]:
    """Each frame's own plan: its minimal (rect) rectangle when the model takes any shape, else the square `imgsz`.
    A plan depends on its frame alone, never on the other frames of the batch."""
    return [plan_letterbox(height, width, imgsz, stride, rect) for height, width in shapes]


def shape_groups(plans: list[LetterboxPlan]) -> list[list[int]]:
    """The positions of the frames of each letterbox shape, in order of first appearance: one forward pass each."""
    groups: dict[tuple[int, int], list[int]] = {}
    for position, plan in enumerate(plans):
        groups.setdefault((plan.out_h, plan.out_w), []).append(position)
    return list(groups.values())


@dataclass
class ModelInput:
    """Frames of one letterbox shape ready for the forward pass, and where each sits in it and in its batch."""

    tensor: torch.Tensor
    """NCHW RGB in [0, 1] on the model's device."""
    plans: list[LetterboxPlan]
    positions: list[int]
    """Each frame's position in the batch it came in."""
    ready: torch.cuda.Event | None = field(default=None, repr=False)
    """On CUDA: recorded on the side stream once upload and letterbox are done."""

    def wait(self) -> None:
        """Order the current stream after the side stream's work on this batch (no-op off CUDA)."""
        if self.ready is not None:
            stream = torch.cuda.current_stream(self.tensor.device)
            stream.wait_event(self.ready)
            self.tensor.record_stream(stream)


class CpuLetterbox:
    """Letterboxes frames on the CPU into one uint8 NHWC batch, exactly as ultralytics does."""

    def __call__(self, images: list[np.ndarray], plans: list[LetterboxPlan]) -> np.ndarray:
        """One [batch, out_h, out_w, 3] uint8 array, BGR like the frames (plans of one shape)."""
        first = plans[0]
        batch = np.empty((len(images), first.out_h, first.out_w, 3), np.uint8)
        for slot, (image, plan) in zip(batch, zip(images, plans)):
            inner = slot[plan.top : plan.top + plan.new_h, plan.left : plan.left + plan.new_w]
            if plan.resized:
                inner[...] = cv2.resize(image, (plan.new_w, plan.new_h), interpolation=cv2.INTER_LINEAR)
            else:
                inner[...] = image
            slot[: plan.top] = PAD_VALUE
            slot[plan.top + plan.new_h :] = PAD_VALUE
            slot[plan.top : plan.top + plan.new_h, : plan.left] = PAD_VALUE
            slot[plan.top : plan.top + plan.new_h, plan.left + plan.new_w :] = PAD_VALUE
        return batch


def normalise(batch: torch.Tensor, half: bool) -> torch.Tensor:
    """uint8 NHWC BGR on any device -> contiguous NCHW RGB in [0, 1], FP16 or FP32."""
    tensor = batch.permute(0, 3, 1, 2).flip(1)
    tensor = tensor.half() if half else tensor.float()
    return tensor.div_(255).contiguous()


class DeviceLetterbox:
    """Letterboxes uint8 frames on a torch device; parity with `CpuLetterbox` within rounding."""

    def __init__(self, device: torch.device, half: bool) -> None:
        self.device = device
        self.half = half
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self._pinned: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.cuda.Event | None]]] = {}

    def __call__(self, images: list[np.ndarray], plans: list[LetterboxPlan], positions: list[int]) -> ModelInput:
        """The normalised NCHW input of frames of one letterbox shape; on CUDA, usable once its `wait()` was
        called."""
        first = plans[0]
        dtype = torch.float16 if self.half else torch.float32
        context = torch.cuda.stream(self.stream) if self.cuda else nullcontext()
        with context:
            out = torch.full((len(images), 3, first.out_h, first.out_w), PAD_VALUE / 255, dtype=dtype,
                             device=self.device)
            for same_size in _same_size_groups(images):
                plan = plans[same_size[0]]
                frames = self._upload([images[i] for i in same_size])
                resized = self._resize(frames, plan)
                index = torch.as_tensor(same_size, device=self.device)
                target = out[:, :, plan.top : plan.top + plan.new_h, plan.left : plan.left + plan.new_w]
                target.index_copy_(0, index, resized.flip(1).to(dtype).div_(255))
            ready = None
            if self.cuda:
                ready = torch.cuda.Event()
                ready.record(self.stream)
        return ModelInput(out, plans, positions, ready)

    def _upload(self, images: list[np.ndarray]) -> torch.Tensor:
        """[n, 3, h, w] float32 on the device from uint8 HWC frames of one size."""
        shape = (len(images), *images[0].shape)
        if not self.cuda:
            host = torch.from_numpy(np.stack(images))
            return host.permute(0, 3, 1, 2).float()
        buffer = self._pinned_buffer(shape)
        np.stack(images, out=buffer.numpy())
        frames = buffer.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(self.stream)
        self._pinned[shape].append((buffer, event))
        return frames.permute(0, 3, 1, 2).float()

    def _pinned_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A pinned host buffer of `shape` whose previous upload has finished (a few per shape)."""
        pool = self._pinned.setdefault(shape, [])
        if len(pool) >= 3:
            buffer, event = pool.pop(0)
            event.synchronize()
            return buffer
        return torch.empty(shape, dtype=torch.uint8, pin_memory=True)

    @staticmethod
    def _resize(frames: torch.Tensor, plan: LetterboxPlan) -> torch.Tensor:
        if not plan.resized:
            return frames
        resized = F.interpolate(frames, size=(plan.new_h, plan.new_w), mode="bilinear", align_corners=False)
        return resized.round_().clamp_(0, 255)


def _same_size_groups(images: list[np.ndarray]) -> list[list[int]]:
    """Indices (into `images`) of the frames of each size: one upload and resize each."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for position, image in enumerate(images):
        groups.setdefault(image.shape, []).append(position)
    return list(groups.values())


