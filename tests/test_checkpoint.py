"""Weights are checked before anything unpickles them: a malicious `.pt` is refused on every
command path without running its code, and real ultralytics checkpoints still load."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from exporters.checkpoint import check_checkpoint, verified_checkpoint
from pipeline.cli import main
from pipeline.core.errors import ModelError
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from tests.terminal import PseudoTerminal
from tests.videos import gradient_frames, write_video
from training.model_factory import untrained_detector
from training.scenes import write_scene_dataset
from training.train import run_training
from training.train_config import load_train_config


class WritesMarker:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


class CallsDetectionModel:
    """Unpickling this calls DetectionModel(cfg): a constructor ultralytics feeds to eval()."""

    def __reduce__(self) -> tuple:
        from ultralytics.nn.tasks import DetectionModel

        return DetectionModel, ({"backbone": [], "head": [], "activation": "print('ran')"},)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "MARKER"


@pytest.fixture
def malicious(weights: Path, tmp_path: Path, marker: Path) -> Path:
    """The demo model's real checkpoint with a marker-writing object hidden in its training arguments."""
    checkpoint = torch.load(weights, weights_only=False)
    checkpoint["train_args"]["augmentations"] = [WritesMarker(marker)]
    path = tmp_path / "malicious.pt"
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", gradient_frames(6))


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scene_dataset(tmp_path_factory.mktemp("scenes"), 16, 4, 64, seed=3)


def _refused(code: int, capsys: pytest.CaptureFixture, marker: Path) -> str:
    err = capsys.readouterr().err
    assert code == 4, err
    assert not marker.exists(), "the checkpoint's code ran"
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_process_refuses_a_malicious_checkpoint_without_running_it(
    malicious: Path, marker: Path, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for backend in ("openvino", "pytorch"):
        code = main(["process", str(video), "--weights", str(malicious), "--cpu-backend", backend,
                     "--out", str(tmp_path / "out")])
        assert "refused: they reference posix.system" in _refused(code, capsys, marker)


def test_serve_bench_and_export_refuse_it(
    malicious: Path, marker: Path, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"id": "cam", "uri": str(video)}]}))
    _refused(main(["serve", "--config", str(config), "--weights", str(malicious)]), capsys, marker)
    _refused(main(["bench", str(video), "--weights", str(malicious)]), capsys, marker)
    _refused(main(["export", str(malicious), "--format", "onnx", "--out", str(tmp_path / "exports")]), capsys, marker)
    assert not list((tmp_path / "exports").glob("*.onnx"))


def test_evaluate_and_train_refuse_it(
    malicious: Path, marker: Path, data_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    evaluate = ["evaluate", "--weights", str(malicious), "--data", str(data_yaml), "--out", str(tmp_path / "eval")]
    _refused(main(evaluate), capsys, marker)
    run = ["--data", str(data_yaml), f"project={tmp_path / 'runs'}", "name=run", "imgsz=64", "epochs=1",
           "augment.paper=false"]
    _refused(main(["train", *run, f"model={malicious}"]), capsys, marker)
    _refused(main(["train", *run, "model=yolov8n.yaml", f"pretrained={malicious}"]), capsys, marker)
    (tmp_path / "runs" / "run" / "weights").mkdir(parents=True)
    shutil.copy2(malicious, tmp_path / "runs" / "run" / "weights" / "last.pt")
    _refused(main(["train", "--resume", *run]), capsys, marker)


def test_calling_a_layer_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "constructor.pt"
    torch.save({"model": CallsDetectionModel()}, path)
    with pytest.raises(ModelError, match="call ultralytics.nn.tasks.DetectionModel, which only a data builder may be"):
        verified_checkpoint(path)


def test_other_formats_and_archives_are_refused(weights: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelError, match="not a PyTorch zip checkpoint"):
        verified_checkpoint(legacy)
    script = tmp_path / "script.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    with pytest.raises(ModelError, match="TorchScript"):
        verified_checkpoint(script)
    torchscript = tmp_path / "model.torchscript"
    shutil.copy2(script, torchscript)
    with pytest.raises(ModelError, match="torchscript models are not loaded"):
        EmotionDetector(torchscript)
    with pytest.raises(ModelError, match="malformed pickle|not a readable"):
        check_checkpoint(weights.read_bytes()[: len(weights.read_bytes()) // 2], "half.pt")


def test_plain_data_in_a_checkpoint_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "data.pt"
    torch.save({"metrics": {"mAP50": np.float64(0.5)}, "save_dir": Path("/runs/x"), "seen": {1, 2},
                "weights": torch.nn.Conv2d(3, 4, 3).state_dict(), "blob": b"\x00\x01"}, path)
    assert verified_checkpoint(path) == path.read_bytes()


def test_real_ultralytics_checkpoints_load(weights: Path, imgsz: int, data_yaml: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    untrained = untrained_detector(tmp_path / "untrained.pt", "yolov8n.yaml")
    for path in (weights, untrained):
        assert len(EmotionDetector(path, settings=DetectorSettings(imgsz=imgsz)).names) == 7
    # A checkpoint as ultralytics training writes it mid-run (EMA, optimizer state, training arguments),
    # then resumed through the checked copy.
    overrides = ["model=yolov8n.yaml", "imgsz=64", "batch=8", "workers=0", "plots=false", "val=false", "epochs=2",
                 "save_period=1", "augment.paper=false", f"project={tmp_path / 'runs'}", "name=run"]
    config = load_train_config(overrides=overrides)
    first = run_training(config, data_yaml)
    mid_run = first.last.parent / "epoch0.pt"
    checkpoint = torch.load(mid_run, weights_only=False)
    assert checkpoint["optimizer"]["state"] and checkpoint["ema"] is not None and checkpoint["train_args"]
    verified_checkpoint(mid_run)
    shutil.copy2(mid_run, first.last)
    caplog.set_level(logging.ERROR, logger="ultralytics")  # ultralytics draws no bars of its own (as without -v)
    with PseudoTerminal() as terminal, monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", terminal.stream)
        resumed = run_training(config, data_yaml, resume=True)
    assert resumed.run_dir == first.run_dir and torch.load(resumed.last, weights_only=False)["epoch"] == -1
    # On a terminal, the epoch bar of the resumed run starts at the resumed epoch.
    bar = [state for state in terminal.text().split("\r") if state.startswith("train:")]
    assert "| 1/2 [" in bar[0] and "| 2/2 [" in bar[-1] and ", box " in bar[-1], bar
    assert "0/2" not in terminal.text()
