"""Configuration: YAML loading, overrides, and clear errors for malformed files."""

from pathlib import Path

import pytest

from pipeline.core.config import DEFAULT_CONFIG, load_config
from pipeline.core.errors import ConfigError


def test_shipped_config_loads_with_documented_defaults() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert config.model.imgsz == 640
    assert config.model.conf == 0.25
    assert config.redis.prefix == "emotion"
    assert config.batching.batch == 8


def test_flags_override_the_file_and_unset_flags_keep_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  imgsz: 320\n  conf: 0.4\n")
    config = load_config(path, {"model.imgsz": 256, "model.conf": None})
    assert config.model.imgsz == 256
    assert config.model.conf == 0.4


def test_redis_url_comes_from_the_environment_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/2")
    assert load_config().redis.url == "redis://example:6379/2"
    assert load_config(overrides={"redis.url": "redis://flag:1/0"}).redis.url == "redis://flag:1/0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  confidence: 0.3\n", "unknown key 'model.confidence' (did you mean 'conf'?)"),
        ("modle:\n  conf: 0.3\n", "unknown section 'modle' (did you mean 'model'?)"),
        ("model:\n  imgsz: big\n", "'model.imgsz' must be int, got 'big'"),
        ("model:\n  conf: 1.5\n", "'model.conf' must be between 0 and 1"),
        ("batching:\n  batch: 0\n", "'batching.batch' must be at least 1"),
        ("model:\n  cpu_backend: tflite\n", "'model.cpu_backend' must be one of openvino, onnx, pytorch"),
        ("model: [1, 2]\n", "section 'model' must be a mapping"),
        ("model:\n  imgsz: [\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping of sections"),
    ],
)
def test_malformed_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_engine_keys_take_yaml_booleans_lists_and_choices(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("model:\n  half: false\n  compile: cudagraph\n  device: [cuda:0, cuda:1]\n"
                    "batching:\n  open_files: 2\n")
    config = load_config(path)
    assert config.model.half == "false" and config.model.compile == "cudagraph"
    assert config.model.devices == ["cuda:0", "cuda:1"]
    assert load_config(None, {"model.device": "cpu,cpu"}).model.devices == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match="'model.compile' must be one of off, cudagraph, compile, got 'fast'"):
        load_config(None, {"model.compile": "fast"})
