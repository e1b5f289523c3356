"""Input sizes a model cannot take, and models that are not detectors, fail at load with one line."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from exporters.export import ExportRequest, export
from pipeline.cli import main
from pipeline.core.config import MAX_IMGSZ, load_config
from pipeline.core.errors import ConfigError
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from tests.videos import gradient_frames, write_video


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", gradient_frames(4))


@pytest.fixture(scope="module")
def fixed_onnx(weights: Path, imgsz: int, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model exported to ONNX with a fixed imgsz x imgsz input."""
    out = tmp_path_factory.mktemp("fixed")
    return export(ExportRequest(weights=weights, format="onnx", imgsz=imgsz, batch=1, dynamic=False, out=out))


@pytest.fixture(scope="module")
def classifier_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ONNX model that is not a detector: average pooling to three scores per image."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["output0"])],
        "classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    onnx.save(model, path)
    return path


def _one_line_error(code: int, expected_code: int, capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_imgsz_has_a_maximum() -> None:
    with pytest.raises(ConfigError, match=f"'model.imgsz' must be at most {MAX_IMGSZ}, got 100000"):
        load_config(overrides={"model.imgsz": 100000})


def test_imgsz_off_the_stride_or_too_large_is_refused_on_every_command(
    weights: Path, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for imgsz, message in (("333", "not a multiple of the model's stride 32: use 320 or 352"),
                           ("100000", f"must be at most {MAX_IMGSZ}")):
        model = ["--weights", str(weights), "--imgsz", imgsz]
        assert message in _one_line_error(main(["process", str(video), *model, "--out", str(tmp_path)]), 2, capsys)
        assert message in _one_line_error(main(["bench", str(video), *model]), 2, capsys)
        assert (message.split(":")[0] if imgsz == "333" else "between 1 and") in _one_line_error(
            main(["export", str(weights), "--format", "onnx", "--imgsz", imgsz, "--out", str(tmp_path)]), 2, capsys)
    assert not list(tmp_path.glob("*.onnx"))


def test_a_fixed_size_export_runs_only_at_its_size(
    fixed_onnx: Path, imgsz: int, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert EmotionDetector(fixed_onnx, settings=DetectorSettings(imgsz=imgsz)).format == "onnx"
    code = main(["process", str(video), "--weights", str(fixed_onnx), "--imgsz", str(imgsz * 2),
                 "--out", str(tmp_path)])
    assert f"exported for {imgsz}x{imgsz} input; use {imgsz}" in _one_line_error(code, 2, capsys)


def test_a_model_that_is_not_a_detector_is_refused(
    classifier_onnx: Path, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["process", str(video), "--weights", str(classifier_onnx), "--out", str(tmp_path)])
    err = _one_line_error(code, 4, capsys)
    assert "has no ultralytics metadata (no class names): it answers (1, 3)" in err and "999" not in err
