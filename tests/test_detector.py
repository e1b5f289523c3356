"""The batched detector against YOLO.predict on the same frames and weights."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from ultralytics import YOLO

from pipeline.core.errors import ModelError
from pipeline.engine.batch import Detections
from pipeline.engine.detector import DetectorSettings, EmotionDetector, LetterboxPlace
from pipeline.files.sources import VideoFileSource
from training.synthetic_faces import FER_CLASSES


@pytest.fixture(scope="module")
def frames(scripted_video: tuple[Path, list]) -> list[np.ndarray]:
    video, _truth = scripted_video
    return [frame.image for frame in VideoFileSource(video, stride=6)]


def _assert_same_faces(ours: Detections, frame: int, reference) -> None:
    boxes, rows = reference.boxes, ours.rows(frame)
    assert rows.stop - rows.start == len(boxes), "face count differs from YOLO.predict"
    assert np.abs(ours.xyxy[rows] - boxes.xyxy.numpy()).max(initial=0) <= 1.0
    assert (ours.class_id[rows] == boxes.cls.numpy().astype(int)).all()
    assert np.abs(ours.confidence[rows] - boxes.conf.numpy()).max(initial=0) <= 1e-3
    assert np.allclose(ours.scores[rows].max(axis=1, initial=0), ours.confidence[rows], atol=1e-6)
    assert (ours.scores[rows].argmax(axis=1) == ours.class_id[rows]).all()


@pytest.mark.parametrize("batch", [1, 5])
def test_batched_detection_matches_yolo_predict(weights: Path, imgsz: int, frames: list, batch: int) -> None:
    detector = EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz))
    model = YOLO(str(weights))
    compared = 0
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        ours = detector.detect(chunk)
        reference = model.predict(chunk, imgsz=imgsz, conf=0.25, iou=0.7, max_det=100, agnostic_nms=True, device="cpu",
                                  verbose=False)
        for frame, result in enumerate(reference):
            _assert_same_faces(ours, frame, result)
        compared += len(ours)
    assert compared > len(frames), "the comparison needs faces to compare"


def test_frames_of_different_sizes_in_one_batch_each_get_their_own_letterbox(
    weights: Path, imgsz: int, frames: list
) -> None:
    """Each frame as `YOLO.predict` sees it alone (its own rectangle), not padded to its batch-mates' square."""
    mixed = [frames[0], cv2.resize(frames[1], (320, 180)), cv2.resize(frames[2], (640, 480)), frames[3]]
    detector = EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz))
    ours = detector.detect(mixed)
    model = YOLO(str(weights))
    for frame, image in enumerate(mixed):
        [alone] = model.predict(image, imgsz=imgsz, device="cpu", verbose=False, max_det=100, agnostic_nms=True)
        _assert_same_faces(ours, frame, alone)
        for x1, y1, x2, y2 in ours.xyxy[ours.rows(frame)]:
            assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]
    assert len(ours) >= len(mixed)


def test_class_names_come_from_the_model(weights: Path, imgsz: int) -> None:
    detector = EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz))
    assert detector.names == list(FER_CLASSES)
    assert detector.model_id.startswith("emotion-demo-")


def test_missing_weights_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="weights not found: .*nothing.pt"):
        EmotionDetector(tmp_path / "nothing.pt")


def test_unreadable_weights_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(ModelError, match="cannot load weights .*junk.pt"):
        EmotionDetector(junk)


def test_a_classification_model_is_not_a_detector(tmp_path: Path) -> None:
    path = tmp_path / "classifier.pt"
    YOLO("yolov8n-cls.yaml").save(str(path))
    with pytest.raises(ModelError, match="classify model; emotion-stream needs a detection model"):
        EmotionDetector(path)


@pytest.mark.parametrize("letterbox", [LetterboxPlace.CPU, LetterboxPlace.DEVICE])
def test_frames_of_two_sizes_interleaved_come_back_in_their_places(
    weights: Path, imgsz: int, frames: list, letterbox: LetterboxPlace
) -> None:
    """Each prepared group knows its frames' places in the batch, and every frame comes back in its own."""
    small = [cv2.resize(frame, (176, 144)) for frame in frames[:2]]
    batch = [small[0], frames[0], small[1], frames[1]]
    detector = EmotionDetector(weights, "cpu", DetectorSettings(imgsz=imgsz, letterbox=letterbox))
    prepared = detector.prepare(batch)
    assert sorted(position for model_input in prepared for position in model_input.positions) == [0, 1, 2, 3]
    assert [model_input.positions for model_input in prepared] == [[0, 2], [1, 3]]
    together = detector.detect(batch)
    for number, image in enumerate(batch):
        alone = detector.detect([image])
        rows, alone_rows = together.rows(number), alone.rows(0)
        assert rows.stop - rows.start == alone_rows.stop - alone_rows.start
        assert np.abs(together.xyxy[rows] - alone.xyxy[alone_rows]).max(initial=0) <= 1.0
