"""The dataset settings of a training run: saved by `train` in the run folder, the base of `evaluate`.

A run folder (`runs/train/<name>/`) gets `dataset.yaml`: the resolved `dataset` section of the
training config and the trainer arguments the data set build reads (`imgsz`, `seed`), written
atomically in the training config's own form, so it is read back by `load_train_config` with the
same strict YAML loader and the same checks. `evaluate` finds it from weights inside the run
(`weights/best.pt`, `weights/last.pt`, or an export beside them) and rebuilds the split training
used, unless `--config` or `dataset.*` overrides say otherwise (and then it says what differs).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from pipeline.core.errors import ConfigError, shown
from training.dataset_builder import BuildSettings
from training.train_config import DEFAULT_TRAIN_CONFIG, TrainConfig, load_train_config

RUN_DATASET_FILE = "dataset.yaml"
PATH_KEYS = ("ferplus", "cache_dir")
"""Dataset settings that name files: saved absolute, so a run's settings work from any working folder."""
_HEADER = ("# The dataset settings this run was trained with (emotion-stream train). `emotion-stream evaluate`\n"
           "# --weights <this run>/weights/best.pt --data <FER2013> rebuilds the same split from them.\n")


def build_settings(config: TrainConfig) -> BuildSettings:
    """How the data set is built under `config`: its dataset section and the trainer's `imgsz` and `seed`."""
    dataset = config.dataset
    return BuildSettings(mode=dataset.mode, split=dataset.split, imgsz=int(config.train.get("imgsz", 640)),
                         balance_to=float(dataset.balance_to), max_faces=int(dataset.max_faces),
                         seed=int(config.train.get("seed", 0)))


def dataset_inputs(config: TrainConfig) -> dict:
    """The sections of `config` that decide the data set, in training-config form, with file paths made absolute."""
    dataset = asdict(config.dataset)
    for key in PATH_KEYS:
        if dataset[key] is not None:
            dataset[key] = str(Path(str(dataset[key])).expanduser().resolve())
    build = build_settings(config)
    return {"dataset": dataset, "train": {"imgsz": build.imgsz, "seed": build.seed}}


def save_dataset_settings(run_dir: str | Path, config: TrainConfig) -> Path:
    """Write `run_dir/dataset.yaml` (atomically: a reader sees the old file or the whole new one); returns it."""
    path = Path(run_dir) / RUN_DATASET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _HEADER + yaml.safe_dump(dataset_inputs(config), sort_keys=False)
    descriptor, staging = tempfile.mkstemp(prefix=f".{RUN_DATASET_FILE}.", dir=path.parent)
    try:
        with open(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return path


def run_folder_of(weights: str | Path) -> Path | None:
    """The training run holding `weights`: the folder above `weights/` (best.pt, last.pt, an export beside them)."""
    path = Path(weights).expanduser().resolve()
    for folder in path.parents[:2]:  # weights/best.pt, or weights/best_openvino_model/<file>
        if folder.name == "weights":
            return folder.parent
    return None


@dataclass(frozen=True)
class EvaluationDataset:
    """The training config `evaluate` builds the data set with, and one line saying where it comes from."""

    config: TrainConfig
    note: str


def evaluation_dataset(weights: str | Path, config_path: str | None, overrides: list[str]) -> EvaluationDataset:
    """The settings to build FER2013 with for evaluating `weights`.

    Base: `config_path` when given, else the run's saved `dataset.yaml`, else the default training
    config; `dataset.*` overrides (checked as `train` checks them) win over the base."""
    _refuse_non_dataset_overrides(overrides)
    run = run_folder_of(weights)
    saved = run / RUN_DATASET_FILE if run is not None and (run / RUN_DATASET_FILE).exists() else None
    config = load_train_config(config_path or saved, overrides)
    if saved is None:
        where = f"{run} has no {RUN_DATASET_FILE}" if run is not None else f"{weights} is not in a run's weights/ folder"
        source = f"those of {config_path}" if config_path else f"the defaults ({DEFAULT_TRAIN_CONFIG.name})"
        changed = f" with {' '.join(overrides)}" if overrides else ""
        return EvaluationDataset(config, f"dataset settings: {source}{changed}, as {where}")
    differences = _differences(load_train_config(saved), config)
    if not differences:
        return EvaluationDataset(config, f"dataset settings: the run's, from {saved}")
    return EvaluationDataset(config, f"dataset settings differ from the run's ({saved}): {'; '.join(differences)}")


def _refuse_non_dataset_overrides(overrides: list[str]) -> None:
    """Only `dataset.*` overrides decide how evaluate builds FER2013; anything else is refused (exit 2)."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        if sep and not key.startswith("dataset."):
            raise ConfigError(f"evaluate takes only dataset.* overrides (how FER2013 is built), not {shown(item)}")


def _differences(saved: TrainConfig, now: TrainConfig) -> list[str]:
    """`key run-value (run) -> value (here)` for each build input that differs, named as overrides name them."""
    before, after = _flat(dataset_inputs(saved)), _flat(dataset_inputs(now))
    return [f"{key} {shown(before[key])} (run) -> {shown(after[key])} (here)"
            for key in before if before[key] != after[key]]


def _flat(inputs: dict) -> dict[str, object]:
    return {f"dataset.{key}": value for key, value in inputs["dataset"].items()} | inputs["train"]
