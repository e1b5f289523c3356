"""`emotion-stream train`: FER2013 to a trained YOLOv8 emotion detector, the paper's protocol."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from exporters.loading import loadable_weights
from pipeline.core.errors import ConfigError
from training.augment import augmentation_grid, paper_augmentations
from training.dataset_builder import build_detection_dataset
from training.fer2013 import DatasetError, load_fer
from training.progress import TrainingProgress
from training.run_dataset import build_settings, save_dataset_settings
from training.train_config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where training left its outputs."""

    best: Path
    last: Path
    run_dir: Path
    data_yaml: Path


def prepare_dataset(config: TrainConfig, data: str | Path) -> Path:
    """Load FER2013 from `data` (or use `data` as is when it is a data.yaml) and build the detection set."""
    data = Path(data)
    if is_data_yaml(data):
        if not data.is_file():
            raise DatasetError(f"data set not found: {data}")
        return data
    fer = load_fer(data, config.dataset.ferplus)
    log.info("%s: %d faces, per class %s", fer.source, len(fer), fer.counts())
    return build_detection_dataset(fer, config.dataset.cache_dir, build_settings(config))


def is_data_yaml(data: str | Path) -> bool:
    """Whether `data` names an already built data set (a data.yaml) rather than FER2013 to build one from."""
    return Path(data).suffix in (".yaml", ".yml")


def run_training(config: TrainConfig, data: str | Path, resume: bool = False) -> TrainResult:
    """Build the data set, then train (or resume) with ultralytics; offline, CPU or GPU."""
    from ultralytics import YOLO

    data_yaml = prepare_dataset(config, data)
    args = dict(config.train)
    architecture = args.pop("model", "yolov8m.yaml")
    args["project"] = str(Path(args.get("project", "runs/train")).resolve())  # ultralytics nests relative ones
    run_dir = Path(args["project"]) / str(args.get("name", "fer2013"))
    last = run_dir / "weights" / "last.pt"
    warnings.filterwarnings("ignore", message=r"Argument\(s\) .* are not valid for transform")
    if resume:
        if not last.exists():
            raise ConfigError(f"nothing to resume: {last} does not exist")
        with loadable_weights(last) as checked:  # ultralytics resumes from the checked copy, into run_dir
            trainer_model = YOLO(str(checked))
            TrainingProgress().attach(trainer_model)
            trainer_model.train(resume=True)
    else:
        if not str(architecture).endswith((".yaml", ".yml", ".pt")):
            raise ConfigError(f"train.model must be an architecture .yaml (or .pt weights), got {architecture!r}")
        if config.augment.paper:
            args |= {"augmentations": paper_augmentations(config.augment.probabilities), "fliplr": 0.0, "flipud": 0.0}
            _save_augmentation_figure(data_yaml, run_dir)
        with _architecture(str(architecture)) as start, _pretrained(args.get("pretrained")) as pretrained:
            if pretrained is not None:
                args["pretrained"] = pretrained
            trainer_model = YOLO(start, task="detect")
            built = not is_data_yaml(data)
            if built:  # what evaluate rebuilds the split from, saved before the first epoch
                trainer_model.add_callback("on_pretrain_routine_start",
                                           lambda trainer: save_dataset_settings(trainer.save_dir, config))
            TrainingProgress().attach(trainer_model)
            trainer_model.train(data=str(data_yaml), **args)
            if built:  # again: multi-GPU runs train in worker processes, which skip that callback
                save_dataset_settings(trainer_model.trainer.save_dir, config)
    trainer = trainer_model.trainer
    return TrainResult(Path(trainer.best), Path(trainer.last), Path(trainer.save_dir), data_yaml)


@contextmanager
def _architecture(architecture: str) -> Iterator[str]:
    """What ultralytics starts training from: an architecture .yaml as named, .pt weights as a checked copy."""
    if not architecture.endswith(".pt"):
        yield architecture
        return
    with loadable_weights(Path(architecture)) as checked:
        yield str(checked)


@contextmanager
def _pretrained(value: object) -> Iterator[str | None]:
    """`train.pretrained` given as a weights path: a checked copy (ultralytics unpickles it); None otherwise."""
    if not isinstance(value, str) or value.lower() in ("true", "false"):
        yield None
        return
    with loadable_weights(Path(value)) as checked:
        yield str(checked)


def _save_augmentation_figure(data_yaml: Path, run_dir: Path) -> None:
    """The paper's Figure 1 (originals against augmented images) from the first training images."""
    import cv2

    images_dir = data_yaml.parent / "images" / "train"
    samples = [cv2.imread(str(p)) for p in sorted(images_dir.glob("*.png"))[:4]]
    if samples:
        path = augmentation_grid([s for s in samples if s is not None], run_dir / "augmentations.png")
        log.info("augmentation examples: %s", path)
