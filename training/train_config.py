"""Training configuration: the paper's protocol from YAML, any key overridable as key=value."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path

from pipeline.core.errors import ConfigError, shown
from pipeline.core.yaml_loading import load_yaml_file, load_yaml_text

DEFAULT_TRAIN_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "train_fer2013.yaml"


@dataclass
class DatasetSettings:
    """How FER2013 becomes a detection data set."""

    ferplus: str | None = None
    mode: str = "scenes"
    split: str = "paper"
    balance_to: float = 0.25
    max_faces: int = 3
    cache_dir: str = "runs/datasets"


@dataclass
class AugmentSettings:
    """The paper's augmentations, on or off, probabilities overridable."""

    paper: bool = True
    probabilities: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Everything `emotion-stream train` needs besides the data path."""

    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    train: dict = field(default_factory=dict)


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read the YAML (default configs/train_fer2013.yaml) and apply `key=value` overrides.

    A bare key (`epochs=3`) is a trainer argument; `dataset.x` and `augment.x` reach those sections.
    """
    source = Path(path) if path else DEFAULT_TRAIN_CONFIG
    raw = load_yaml_file(source, "training config") or {}
    config = TrainConfig()
    _apply(config, raw, str(source))
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {shown(item)} must look like key=value")
        value = load_yaml_text(text, f"override {shown(key)}") if text else None
        section, dot, name = key.partition(".")
        if dot and section in ("dataset", "augment", "train"):
            _apply(config, {section: {name: value}}, "command line")
        else:
            _apply(config, {"train": {key: value}}, "command line")
    return config


def _apply(config: TrainConfig, raw: dict, origin: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected sections dataset, augment, train")
    for section, values in raw.items():
        if section not in ("dataset", "augment", "train"):
            raise ConfigError(f"{origin}: unknown section {shown(section)} (known: dataset, augment, train)")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section '{section}' must be a mapping")
        if section == "train":
            _check_trainer_keys(values, origin)
            config.train.update(values)
            continue
        target = getattr(config, section)
        known = {f.name: f for f in fields(target)}
        for key, value in values.items():
            if key not in known:
                close = difflib.get_close_matches(str(key), list(known), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
                raise ConfigError(f"{origin}: unknown key {shown(f'{section}.{key}')}{hint}")
            setattr(target, key, value)


def _check_trainer_keys(values: dict, origin: str) -> None:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    known = set(DEFAULT_CFG_DICT) | {"model"}
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{origin}: {shown(key)} is not an ultralytics training argument{hint}")
