"""Letterboxing: the CPU path equals ultralytics' `LetterBox`; the device path (run here on torch's
CPU device, the same code CUDA runs) stays within rounding of it and keeps parity with `YOLO.predict`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox

from pipeline.engine.detector import DetectorSettings, EmotionDetector, LetterboxPlace
from pipeline.engine.preprocess import CpuLetterbox, DeviceLetterbox, normalise, plan_frames, shape_groups
from pipeline.files.sources import VideoFileSource

SHAPES = [(720, 1280), (1080, 1920), (96, 160), (333, 517), (640, 480), (100, 100), (41, 800)]


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8),
                       (width, height), interpolation=cv2.INTER_CUBIC)
    return image


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rect", [True, False])
def test_cpu_letterbox_is_ultralytics_letterbox(shape: tuple[int, int], rect: bool) -> None:
    images = [_image(*shape, seed) for seed in range(2)]
    plans = plan_frames([shape, shape], 640, 32, rect)
    ours = CpuLetterbox()(images, plans)
    for image, mine in zip(images, ours):
        reference = LetterBox(640, auto=rect, stride=32)(image=image)
        assert mine.shape == reference.shape
        assert np.array_equal(mine, reference)


def test_each_frame_keeps_its_own_plan_whatever_shares_its_batch() -> None:
    shapes = [(720, 1280), (480, 640), (720, 1280)]
    plans = plan_frames(shapes, 320, 32, rect=True)
    assert plans == [plan_frames([shape], 320, 32, rect=True)[0] for shape in shapes]
    assert [(p.out_h, p.out_w) for p in plans] == [(192, 320), (256, 320), (192, 320)]
    assert shape_groups(plans) == [[0, 2], [1]]
    square = plan_frames(shapes, 320, 32, rect=False)  # a fixed-shape model or a CUDA graph: one square group
    assert {(p.out_h, p.out_w) for p in square} == {(320, 320)} and shape_groups(square) == [[0, 1, 2]]


@pytest.mark.parametrize("shape", SHAPES)
def test_device_letterbox_matches_the_cpu_letterbox_within_rounding(shape: tuple[int, int]) -> None:
    images = [_image(*shape, seed) for seed in range(3)]
    plans = plan_frames([shape] * 3, 640, 32, rect=True)
    reference = normalise(torch.from_numpy(CpuLetterbox()(images, plans)), half=False)
    device = DeviceLetterbox(torch.device("cpu"), half=False)(images, plans, [0, 1, 2]).tensor
    assert device.shape == reference.shape and device.dtype == torch.float32
    difference = (device - reference).abs() * 255
    assert difference.max() <= 1.0 + 1e-3, "at most one grey level apart (OpenCV's fixed-point rounding)"
    assert difference.mean() <= 0.25, "and most pixels equal"


def test_device_letterbox_of_frames_of_two_sizes_in_one_square_places_each_frame() -> None:
    images = [_image(720, 1280), _image(480, 640, 1), _image(720, 1280, 2)]
    plans = plan_frames([image.shape[:2] for image in images], 320, 32, rect=False)
    reference = normalise(torch.from_numpy(CpuLetterbox()(images, plans)), half=False)
    device = DeviceLetterbox(torch.device("cpu"), half=False)(images, plans, [0, 1, 2]).tensor
    assert ((device - reference).abs() * 255).max() <= 1.0 + 1e-3


@pytest.fixture(scope="module")
def video_frames(scripted_video: tuple) -> list[np.ndarray]:
    return [frame.image for frame in VideoFileSource(scripted_video[0])]


def test_device_letterbox_keeps_parity_with_yolo_predict(weights: Path, imgsz: int, video_frames: list) -> None:
    """Boxes within 2 px and the same classes on at least 98% of the frames of a real H.264 video."""
    settings = DetectorSettings(imgsz=imgsz, letterbox=LetterboxPlace.DEVICE)
    detector = EmotionDetector(weights, "cpu", settings)
    assert "letterbox on device" in detector.description
    model = YOLO(str(weights))
    agreeing = faces = 0
    for start in range(0, len(video_frames), 16):
        chunk = video_frames[start : start + 16]
        ours = detector.detect(chunk)
        reference = model.predict(chunk, imgsz=imgsz, conf=0.25, iou=0.7, max_det=100, agnostic_nms=True,
                                  device="cpu", verbose=False)
        for frame, result in enumerate(reference):
            rows, boxes = ours.rows(frame), result.boxes
            faces += len(boxes)
            same = (rows.stop - rows.start == len(boxes)
                    and np.abs(ours.xyxy[rows] - boxes.xyxy.numpy()).max(initial=0) <= 2.0
                    and (ours.class_id[rows] == boxes.cls.numpy().astype(int)).all())
            agreeing += bool(same)
    assert faces > len(video_frames), "the comparison needs faces to compare"
    assert agreeing >= 0.98 * len(video_frames)
