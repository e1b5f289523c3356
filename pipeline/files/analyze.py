"""`analyze_video`: the `process` command as a Python call, for notebooks and programs.

Settings are the configuration's (configs/pipeline.yaml), given as keywords, dotted
(`**{"model.conf": 0.4}`) or nested by section (`model={"conf": 0.4}`), and checked by the
same loader as the command line's flags: an unknown key or a value of the wrong type is a
ConfigError naming it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pipeline.core.config import PipelineConfig, load_config
from pipeline.core.errors import ConfigError, shown
from pipeline.core.quiet import quiet_libraries
from pipeline.core.source_ids import check_source_id
from pipeline.files.process import RunReport, process_video

ORIGIN = "analyze_video"
"""How the settings of a call are named in its errors."""
ARGUMENTS = {"model.weights": "weights", "output.dir": "out", "redis.url": "redis"}
"""Settings that are arguments of `analyze_video` of their own."""


def analyze_video(
    video: str | Path,
    weights: str | Path,
    *,
    out: str | Path = "runs/process",
    redis: str | Literal[False] | None = None,
    source_id: str | None = None,
    replace: bool = False,
    progress: bool = False,
    verbose: bool = False,
    **settings: Any,
) -> RunReport:
    """Process one video file as `emotion-stream process` does and return its report.

    Writes `timeline.jsonl`, `timeline.csv`, `events.jsonl` and `summary.json` to
    `out/<source_id>` (the report's `output_dir`) and, with Redis, the frames and events
    streams of `source_id`.

    Args:
        video: the video file (any container and codec FFmpeg reads).
        weights: the model: `.pt`, `.onnx`, an OpenVINO folder or a TensorRT `.engine`.
        out: the output folder; each source writes to a folder of its own inside it.
        redis: a Redis URL (`redis://host:6379/0`) to stream the timeline to. None follows the
            configuration's rule: $REDIS_URL when it is set, else no Redis. False: no Redis, whatever
            $REDIS_URL says.
        source_id: the source's id in Redis and its output folder's name (default: from the file name).
        replace: delete what Redis holds for `source_id` first; without it, results of another file or
            other settings under that id refuse the run (SinkError).
        progress: show a progress bar (on stderr).
        verbose: let ultralytics log as it is set to (by default only its warnings and errors show).
        **settings: configuration keys, dotted (`**{"model.conf": 0.4, "source.stride": 2}`) or by
            section (`model={"conf": 0.4}`); Redis keys other than the URL go dotted
            (`**{"redis.contract": 2}`), as `redis` is the URL.

    Returns:
        The run's report: frames, faces, emotions and events counted (`summary`), frames per second,
        the output folder and any problem (`source_problem`, `redis_problem`; the files are written
        whatever Redis does).

    Raises:
        ConfigError: an unknown setting, a value of the wrong type, or a bad source id.
        SourceError: the file cannot be opened as video (nothing is written).
        ModelError: the weights are missing, unreadable or not a detection model.
        SinkError: Redis holds another run under `source_id` (pass `replace=True`).
    """
    if isinstance(redis, Mapping):
        raise ConfigError(f"{ORIGIN}: redis is the Redis URL; give the other Redis settings dotted, "
                          f"e.g. **{{'redis.contract': 2}}")
    overrides = settings_overrides(settings) | {"model.weights": str(weights), "output.dir": str(out)}
    if redis:
        overrides["redis.url"] = redis
    if source_id is not None:
        check_source_id(source_id, "source_id")
    config = load_settings(overrides)
    if redis is False:
        config.redis.url = None
    with quiet_libraries(verbose):
        return process_video(config, video, source_id, show_progress=progress, replace=replace)


def settings_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword settings as the loader's dotted overrides: `model={"conf": 0.4}` and `**{"model.conf": 0.4}` both
    become `{"model.conf": 0.4}`; ConfigError for a key that names no section, or an argument's setting."""
    sections = {field.name: field.default_factory for field in dataclasses.fields(PipelineConfig)}
    dotted: dict[str, Any] = {}
    for name, value in settings.items():
        if "." in name:
            dotted[name] = value
        elif isinstance(value, Mapping):  # a section (the loader names one that is not)
            dotted.update({f"{name}.{key}": item for key, item in value.items()})
        elif name in sections:
            raise ConfigError(f"{ORIGIN}: section {shown(name)} takes a mapping of its keys "
                              f"({name}={{...}}), got {shown(value)}")
        else:
            owners = [section for section, make in sections.items()
                      if dataclasses.is_dataclass(make) and name in {field.name for field in dataclasses.fields(make)}]
            hint = f" (did you mean {shown(f'{owners[0]}.{name}')}?)" if owners else ""
            raise ConfigError(f"{ORIGIN}: unknown setting {shown(name)}: settings are 'section.key' "
                              f"or section={{key: value}}{hint}")
    for key, argument in ARGUMENTS.items():
        if key in dotted:
            raise ConfigError(f"{ORIGIN}: {key} is the {argument!r} argument: pass {argument}=...")
    return dotted


def load_settings(overrides: dict[str, Any]) -> PipelineConfig:
    """The configuration with `overrides`, as the command line loads it; errors name this call, not the
    command line."""
    try:
        return load_config(None, overrides)
    except ConfigError as exc:
        message = str(exc)
        if message.startswith("command line: "):
            raise ConfigError(f"{ORIGIN}: {message.removeprefix('command line: ')}") from None
        raise
