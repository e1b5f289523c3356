"""Defaults from the model: weights run at the size they state, as `YOLO.predict` runs them; another size runs
with one warning naming both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ultralytics import YOLO

from exporters.export import ExportRequest, export, resolved
from exporters.input_size import StatedSize
from exporters.metadata import sidecar_path
from pipeline.cli import main
from pipeline.engine.detector import DetectorSettings, EmotionDetector

MISMATCH = "--imgsz/model.imgsz {asked} differs from the {own} {name} states (its train_args)"


def test_a_checkpoint_runs_at_the_size_it_was_trained_at(weights: Path, imgsz: int) -> None:
    detector = EmotionDetector(weights)
    assert detector.stated_size == StatedSize(imgsz, "its train_args")
    assert detector.settings.imgsz == imgsz == 160  # the demo model's train_args; 640 would be ultralytics' default
    assert EmotionDetector(weights, settings=DetectorSettings(imgsz=imgsz * 2)).settings.imgsz == imgsz * 2


def test_process_without_imgsz_finds_the_faces_yolo_predict_finds_with_its_own_defaults(
    scripted_video: tuple, weights: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    video, truth = scripted_video
    assert main(["process", str(video), "--weights", str(weights), "--out", str(tmp_path), "--quiet",
                 "--source-id", "clip"]) == 0
    assert "differs from" not in caplog.text
    ours = [json.loads(line)["faces"] for line in (tmp_path / "clip" / "timeline.jsonl").read_text().splitlines()]
    theirs = list(YOLO(str(weights)).predict(str(video), stream=True, verbose=False))  # every setting ultralytics'
    assert len(ours) == len(theirs) == len(truth)
    agreeing = sum(_same_faces(faces, result) for faces, result in zip(ours, theirs))
    assert sum(len(faces) for faces in ours) >= len(ours), "the comparison needs faces"
    assert agreeing >= 0.98 * len(ours), f"{agreeing} of {len(ours)} frames agree with YOLO.predict"


def _same_faces(faces: list[dict], result) -> bool:
    """Same number of faces, each with a box within 2 px of one of theirs and the same emotion."""
    boxes, names = result.boxes.xyxy.numpy(), [result.names[int(c)] for c in result.boxes.cls]
    if len(faces) != len(boxes):
        return False
    for face in faces:
        distance = np.abs(boxes - np.array(face["box"])).max(axis=1)
        nearest = int(distance.argmin())
        if distance[nearest] > 2.0 or names[nearest] != face["emotion"]:
            return False
    return True


def test_another_size_runs_with_one_warning_naming_both(
    scripted_video: tuple, weights: Path, imgsz: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    video, _truth = scripted_video
    asked = imgsz * 2
    assert main(["process", str(video), "--weights", str(weights), "--imgsz", str(asked), "--out", str(tmp_path),
                 "--quiet", "--source-id", "clip"]) == 0
    expected = MISMATCH.format(asked=asked, own=imgsz, name=weights.name)
    said = [record for record in caplog.records if expected in record.getMessage()]
    assert len(said) == 1, caplog.text  # once, though the CPU fast path loads the model twice
    assert said[0].levelname == "WARNING"
    assert f"leave --imgsz/model.imgsz unset to run at {imgsz}" in said[0].getMessage()
    summary = json.loads((tmp_path / "clip" / "summary.json").read_text())
    assert summary["frames"] > 0


def test_an_export_runs_at_the_size_of_the_weights_it_came_from(
    weights: Path, imgsz: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["export", str(weights), "--format", "onnx", "--out", str(tmp_path)]) == 0
    assert "differs from" not in caplog.text
    artifact = next(tmp_path.glob("*.onnx"))
    assert json.loads(sidecar_path(artifact).read_text())["imgsz"] == imgsz
    detector = EmotionDetector(artifact)
    assert (detector.settings.imgsz, detector.stated_size.origin) == (imgsz, "its export sidecar")
    sidecar_path(artifact).unlink()  # an ultralytics export without ours: its own metadata says the size
    detector = EmotionDetector(artifact)
    assert (detector.settings.imgsz, detector.stated_size.origin) == (imgsz, "its export metadata")


def test_export_at_another_size_says_so(weights: Path, imgsz: int, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    request = ExportRequest(weights=weights, format="onnx", imgsz=imgsz * 2, batch=1, out=tmp_path)
    artifact = export(resolved(request))
    assert MISMATCH.format(asked=imgsz * 2, own=imgsz, name=weights.name).replace("--imgsz/model.imgsz", "--imgsz") \
        in caplog.text
    assert json.loads(sidecar_path(artifact).read_text())["imgsz"] == imgsz * 2
    assert EmotionDetector(artifact).settings.imgsz == imgsz * 2  # the export states its own size now


@pytest.mark.parametrize(("value", "code", "message"), [
    ("auto", 0, None),
    ("big", 2, "argument --imgsz: expected a number of pixels or auto, got 'big'"),
])
def test_imgsz_on_the_command_line_takes_pixels_or_auto(
    scripted_video: tuple, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    value: str, code: int, message: str | None,
) -> None:
    video, _truth = scripted_video
    argv = ["process", str(video), "--weights", str(weights), "--imgsz", value, "--out", str(tmp_path), "--quiet"]
    if code == 0:
        assert main(argv) == 0
        return
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == code and message in capsys.readouterr().err


def test_a_stated_size_off_the_stride_runs_at_the_next_multiple_as_ultralytics_does(
    weights: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)  # the shipped file: ours
    checkpoint["train_args"]["imgsz"] = 150
    odd = tmp_path / "odd.pt"
    torch.save(checkpoint, odd)
    detector = EmotionDetector(odd)
    assert (detector.stated_size.imgsz, detector.settings.imgsz) == (150, 160)
    assert "odd.pt states input size 150, not a multiple of its stride 32: running at 160" in caplog.text


def test_a_cache_that_is_a_file_is_one_line(scripted_video: tuple, weights: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The CPU fast path exports into EMOTION_STREAM_CACHE: a file there is named, exit 2, no traceback."""
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EMOTION_STREAM_CACHE", str(blocker / "inside"))
    code = main(["process", str(scripted_video[0]), "--weights", str(weights), "--out", str(tmp_path / "out"),
                 "--quiet", "--cpu-backend", "openvino"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1] == f"emotion-stream: error: EMOTION_STREAM_CACHE {blocker / 'inside'} cannot be a folder: " \
                      f"{blocker} is a file"


def test_export_into_a_place_that_cannot_be_a_folder_is_one_line(weights: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["export", str(weights), "--format", "onnx", "--out", str(blocker / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0] == f"emotion-stream: error: cannot write the export into {blocker / 'out'}: Not a directory"
