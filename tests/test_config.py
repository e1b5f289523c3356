"""Configuration: YAML loading, overrides, and clear errors for malformed files."""

import os
import re
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.config import DEFAULT_CONFIG, load_config
from pipeline.core.errors import ConfigError


def test_shipped_config_loads_with_documented_defaults() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert config.model.imgsz == "auto"
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
        ("fleet:\n  cpus_per_actor: 0\n", "'fleet.cpus_per_actor' must be at least 1"),
        ("fleet:\n  cameras_per_actor: many\n", "'fleet.cameras_per_actor' must be int"),
        ("model:\n  cpu_backend: tflite\n", "'model.cpu_backend' must be one of auto, openvino, onnx, pytorch"),
        ("model: [1, 2]\n", "section 'model' must be a mapping"),
        ("model:\n  imgsz: [\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping of sections"),
        ("source:\n  decode_processes: 100000\n", "'source.decode_processes' must be at most 64, got 100000"),
        ("model:\n  compile: on\n", "'model.compile' must be str, got True (YAML reads on/off/yes/no as true/false"),
        ("batching:\n  max_wait_ms: .inf\n", "'batching.max_wait_ms' must be float, got inf"),
        ("redis:\n  timeout_s: .nan\n", "'redis.timeout_s' must be float, got nan"),
        ("redis:\n  timeout_s: 1e999\n", "'redis.timeout_s' must be float"),
        ('redis:\n  prefix: "emo\\ntion"\n', "'redis.prefix' must be a word"),
    ],
)
def test_malformed_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    error, path = _refusal(tmp_path, text)
    assert message in error and str(path) in error


def _refusal(tmp_path: Path, text: str) -> tuple[str, Path]:
    """The error `load_config` raises for a file holding `text`, and the file's path."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return str(error.value), path


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


def alias_bomb(levels: int) -> str:
    """A flow list of `levels` lists, each holding nine aliases of the one before: 9**levels items
    once expanded, in a few hundred bytes (the "billion laughs")."""
    lists = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lists += [f"&l{level} [{', '.join([f'*l{level - 1}'] * 9)}]" for level in range(1, levels)]
    return f"[{', '.join(lists)}]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"model:\n  imgsz: {alias_bomb(4)}\n", "aliases (*l0) are not allowed at line 2"),
        ("model:\n  conf: 0.3\n  conf: 0.4\n", "duplicate key 'conf' at line 3"),
        ("model:\n  conf: 0.3\nmodel:\n  iou: 0.5\n", "duplicate key 'model' at line 3"),
        ("model:\n" + "".join("  " * depth + "k:\n" for depth in range(1, 500)), "nested deeper than 64 levels"),
        ("model: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64 levels"),
        ("model: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    ],
)
def test_hostile_yaml_is_refused_in_one_short_line(tmp_path: Path, text: str, message: str) -> None:
    error, path = _refusal(tmp_path, text)
    assert message in error and str(path) in error and "\n" not in error and len(error) < 300


def test_a_binary_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ConfigError, match=r"weights.pt: not a YAML text file \(binary or not UTF-8\)$"):
        load_config(path)


def test_a_huge_value_is_echoed_short(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("batching:\n  batch: [" + ", ".join(["123456789"] * 5_000) + "]\n")
    with pytest.raises(ConfigError, match="'batching.batch' must be int, got") as error:
        load_config(path)
    assert len(str(error.value)) < 300


def test_a_folder_given_as_config_is_named_as_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"config file {tmp_path} is a folder, not a YAML file"):
        load_config(tmp_path)


def test_special_files_given_as_config_are_named_and_never_read(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # no writer: reading it would block forever
    for path, kind in ((Path("/dev/zero"), "a character device"), (fifo, "a FIFO (named pipe)")):
        with pytest.raises(ConfigError, match=re.escape(f"config file {path} is {kind}, not a YAML file")):
            load_config(path)
    assert main(["process", str(tmp_path / "none.mp4"), "--config", "/dev/zero"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["emotion-stream: error: config file /dev/zero is a character device, not a YAML file"]


def test_a_config_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 200_000)  # 2 MB of comments: valid YAML, but no config is this large
    with pytest.raises(ConfigError, match=f"config file {path} is larger than 1 MiB"):
        load_config(path)


@pytest.mark.parametrize("source_id", [".", "..", "cam\\n", "", "../up"])
def test_source_ids_that_would_leave_the_output_folder_are_refused(tmp_path: Path, source_id: str) -> None:
    path = tmp_path / "cameras.yaml"
    path.write_text(f'sources:\n  - id: "{source_id}"\n    uri: rtsp://cam/stream\n')
    with pytest.raises(ConfigError, match="source #1: invalid source id"):
        load_config(path)


def test_training_config_reads_yaml_the_same_way(tmp_path: Path) -> None:
    from training.train_config import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text("train:\n  epochs: 3\n  epochs: 4\n")
    with pytest.raises(ConfigError, match="train.yaml: not valid YAML \\(duplicate key 'epochs' at line 3\\)"):
        load_train_config(path)
    path.write_text(f"train:\n  epochs: {alias_bomb(9)}\n")
    with pytest.raises(ConfigError, match="aliases"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="aliases"):
        load_train_config(None, ["epochs=[&a [1], *a]"])
    with pytest.raises(ConfigError, match="is a folder"):
        load_train_config(tmp_path)
