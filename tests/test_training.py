"""Train and evaluate on synthetic FER-format data, as a user would on FER2013."""

import re
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.core.errors import ConfigError
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from training.augment import PAPER_PROBABILITIES, augmentation_grid, paper_augmentations
from training.fer2013 import write_fer2013_csv
from training.progress import EpochSummary, format_duration
from training.run_dataset import evaluation_dataset, run_folder_of
from training.synthetic_faces import FER_CLASSES, synthetic_fer
from training.train import run_training
from training.train_config import load_train_config

FAST = ["model=yolov8n.yaml", "imgsz=96", "batch=32", "workers=0", "plots=false", "optimizer=AdamW", "lr0=0.002",
        "mosaic=0", "dataset.mode=paper"]


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = synthetic_fer(100, seed=5)
    return write_fer2013_csv(tmp_path_factory.mktemp("fer") / "fer2013.csv", images, labels, ["Training"] * len(labels))


def test_paper_protocol_is_the_default_config() -> None:
    config = load_train_config()
    expected = {"model": "yolov8m.yaml", "epochs": 100, "lr0": 0.0005, "batch": 32, "patience": 10, "optimizer": "Adam"}
    assert expected.items() <= config.train.items()
    assert config.dataset.split == "paper" and config.augment.paper is True


def test_overrides_and_their_errors() -> None:
    config = load_train_config(overrides=["epochs=3", "dataset.mode=paper", "augment.paper=false"])
    assert config.train["epochs"] == 3 and config.dataset.mode == "paper" and config.augment.paper is False
    with pytest.raises(ConfigError, match="'epoch' is not an ultralytics training argument .*did you mean 'epochs'"):
        load_train_config(overrides=["epoch=3"])
    with pytest.raises(ConfigError, match="unknown key 'dataset.modes'"):
        load_train_config(overrides=["dataset.modes=paper"])


def test_paper_augmentations_keep_published_probabilities(tmp_path: Path) -> None:
    transforms = paper_augmentations()
    assert [round(t.p, 2) for t in transforms] == list(PAPER_PROBABILITIES.values())
    assert paper_augmentations({"coarse_dropout": 0.1})[-1].p == 0.1
    images, _ = synthetic_fer(1, seed=0)
    grid = augmentation_grid(list(images[:3]), tmp_path / "figure1.png")
    import cv2

    assert cv2.imread(str(grid)).shape[0] > 3 * 160


def test_train_evaluate_and_run_in_the_pipeline(fer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    overrides = FAST + ["epochs=25", "augment.paper=false", f"project={tmp_path / 'runs'}",
                        f"dataset.cache_dir={tmp_path / 'datasets'}"]
    result = run_training(load_train_config(overrides=overrides), fer_csv)
    assert result.best.exists()
    saved = result.run_dir / "dataset.yaml"
    settings = yaml.safe_load(saved.read_text())
    assert settings == {"dataset": {"ferplus": None, "mode": "paper", "split": "paper", "balance_to": 0.25, "max_faces": 3,
                                    "cache_dir": str((tmp_path / "datasets").resolve())},
                        "train": {"imgsz": 96, "seed": 0}}
    assert not list(result.run_dir.glob(".dataset.yaml.*")), "the atomic write left its staging file"
    capsys.readouterr()

    # FER2013 data, no overrides, no --imgsz: the run's settings (paper mode, imgsz 96) rebuild the split it trained on.
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", str(result.best), "--data", str(fer_csv), "--out", str(out)]) == 0
    assert f"dataset settings: the run's, from {saved.resolve()}\n" in capsys.readouterr().out
    report = yaml.safe_load((out / "report.json").read_text())
    assert Path(report["data"]).resolve() == result.data_yaml.resolve()  # the cached build training used
    assert report["build"]["settings"]["mode"] == "paper" and report["build"]["settings"]["imgsz"] == 96
    # Measured: accuracy 1.000 and mAP50 0.995 on the 70 test faces after 25 epochs (about 90 s of CPU).
    assert report["classifier"]["accuracy"] >= 0.9
    assert report["detection"][-1]["class"] == "all" and report["detection"][-1]["mAP50"] >= 0.8
    assert [row["class"] for row in report["detection"][:-1]] == list(FER_CLASSES)
    for figure in ("confusion_matrix.png", "BoxPR_curve.png", "BoxF1_curve.png", "classifier_confusion.png", "labels.jpg",
                   "labels_correlogram.png"):
        assert (out / figure).exists(), figure
    markdown = (out / "report.md").read_text()
    assert "Table 2" in markdown and "mode paper" in markdown

    # An override that differs from the run's settings wins, and one line says so.
    out = tmp_path / "eval-unbalanced"
    assert main(["evaluate", "--weights", str(result.last), "--data", str(fer_csv), "--out", str(out),
                 "dataset.balance_to=0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"dataset settings differ from the run's ({saved.resolve()}): dataset.balance_to 0.25 (run) -> 0 (here)" in lines
    report = yaml.safe_load((out / "report.json").read_text())
    assert report["build"]["settings"] == {"mode": "paper", "split": "paper", "imgsz": 96, "balance_to": 0.0,
                                           "max_faces": 3, "seed": 0}
    assert Path(report["data"]).parent != result.data_yaml.parent
    detector = EmotionDetector(result.best, "cpu", DetectorSettings(imgsz=96))
    assert detector.names == list(FER_CLASSES)


def test_evaluate_takes_only_dataset_overrides(fer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = tmp_path / "best.pt"  # refused before the weights are read
    evaluate = ["evaluate", "--weights", str(weights), "--data", str(fer_csv), "--out", str(tmp_path / "eval")]
    assert main(evaluate + ["epochs=3"]) == 2
    err = capsys.readouterr().err
    assert err == "emotion-stream: error: evaluate takes only dataset.* overrides (how FER2013 is built), not 'epochs=3'\n"
    assert main(evaluate + ["dataset.modes=paper"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'dataset.modes' (did you mean 'mode'?)" in err and err.count("\n") == 1
    assert main(evaluate + ["dataset.mode"]) == 2
    assert "override 'dataset.mode' must look like key=value" in capsys.readouterr().err
    data_yaml = ["--data", str(tmp_path / "data.yaml")]
    assert main(evaluate[:3] + data_yaml + ["dataset.mode=paper"]) == 2
    assert "dataset overrides need FER2013 to build from" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_evaluate_finds_the_run_of_its_weights(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "train" / "x"
    (run / "weights" / "best_openvino_model").mkdir(parents=True)
    for weights in ("best.pt", "last.pt", "epoch3.pt", "best.onnx", "best_openvino_model", "best_openvino_model/best.xml"):
        assert run_folder_of(run / "weights" / weights) == run.resolve(), weights
    (run / "weights" / "best.pt").write_bytes(b"weights")
    (tmp_path / "linked.pt").symlink_to(run / "weights" / "best.pt")
    assert run_folder_of(tmp_path / "linked.pt") == run.resolve()
    assert run_folder_of(tmp_path / "loose.pt") is None

    loose = evaluation_dataset(tmp_path / "loose.pt", None, ["dataset.mode=paper"])
    assert loose.config.dataset.mode == "paper" and loose.config.train["imgsz"] == 640
    assert loose.note == (f"dataset settings: the defaults (train_fer2013.yaml) with dataset.mode=paper, "
                          f"as {tmp_path / 'loose.pt'} is not in a run's weights/ folder")
    assert evaluation_dataset(run / "weights" / "best.pt", None, []).note.endswith(f"as {run.resolve()} has no dataset.yaml")

    (run / "dataset.yaml").write_text("dataset:\n  mode: paper\n  mode: scenes\n")
    with pytest.raises(ConfigError, match=r"dataset.yaml: not valid YAML \(duplicate key 'mode' at line 3\)"):
        evaluation_dataset(run / "weights" / "best.pt", None, [])
    (run / "dataset.yaml").write_text("dataset:\n  mode: paper\n  split: official\ntrain:\n  imgsz: 96\n")
    differs = evaluation_dataset(tmp_path / "linked.pt", None, ["dataset.split=paper", "dataset.mode=paper"])
    assert differs.config.dataset.mode == "paper" and differs.config.train["imgsz"] == 96
    assert differs.note == (f"dataset settings differ from the run's ({run.resolve() / 'dataset.yaml'}): "
                            "dataset.split 'official' (run) -> 'paper' (here)")


def test_train_command_wires_paper_augmentations_and_shows_epochs(fer_csv: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    overrides = FAST + ["epochs=1", "augment.paper=true", f"project={tmp_path / 'runs'}",
                        f"dataset.cache_dir={tmp_path / 'datasets'}"]
    assert main(["train", "--data", str(fer_csv), *overrides]) == 0
    captured = capsys.readouterr()
    # Not a terminal: one plain line per epoch on stderr, then ultralytics' validation of best.pt.
    lines = [line for line in captured.err.splitlines() if re.match(r"(epoch \d|best\.pt)", line)]
    losses = r"box \d+\.\d{3} cls \d+\.\d{3} dfl \d+\.\d{3}  mAP50 \d\.\d{3}  \d+\.\d s/epoch"
    assert re.fullmatch(rf"epoch 1/1  {losses}  ETA 0s", lines[0]), lines
    assert re.fullmatch(r"best\.pt  mAP50 \d\.\d{3}", lines[1]) and len(lines) == 2, lines
    run_dir = Path(re.search(r"run folder: +(.+)", captured.out).group(1))
    assert (run_dir / "augmentations.png").exists()
    args = yaml.safe_load((run_dir / "args.yaml").read_text())
    used = [item["transform"]["__class_fullname__"] for item in args["augmentations"]]
    assert used == ["HorizontalFlip", "VerticalFlip", "RandomBrightnessContrast", "Affine", "GaussianBlur",
                    "RGBShift", "CLAHE", "CoarseDropout"]
    assert args["fliplr"] == 0.0 and args["flipud"] == 0.0


def test_training_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "fer2013.csv"
    bad.write_text("emotion,pixels\n0,1 2 3\n")
    assert main(["train", "--data", str(bad), "epochs=1"]) == 6
    assert "missing column(s) Usage" in capsys.readouterr().err
    assert main(["train", "--data", str(bad), "epoch=1"]) == 2
    assert "not an ultralytics training argument" in capsys.readouterr().err


def test_epoch_lines_and_durations_read_plainly() -> None:
    assert [format_duration(s) for s in (0.4, 42, 59.6, 444, 3599, 3725, 36000)] == [
        "0s", "42s", "1m00s", "7m24s", "59m59s", "1h02m", "10h00m"]
    summary = EpochSummary(3, 40, {"box": 1.2341, "cls": 2.3449, "dfl": 0.9}, 0.8124, 12.06)
    assert summary.line(444) == "epoch 3/40  box 1.234 cls 2.345 dfl 0.900  mAP50 0.812  12.1 s/epoch  ETA 7m24s"
    unvalidated = EpochSummary(1, 2, {"box": 1.0}, None, 3.0)
    assert unvalidated.line(3.0) == "epoch 1/2  box 1.000  3.0 s/epoch  ETA 3s"
