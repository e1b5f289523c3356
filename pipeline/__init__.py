"""emotion-stream runtime: sources, batched emotion detection, tracking-free timelines and sinks.

The Python API (docs/python-api.md):

    analyze_video(video, weights, *, out=..., redis=..., **settings) -> RunReport
        the `process` command as a call: a video file into timeline files (and Redis)
    read_timeline(path_or_redis_url, source_id=None) -> pandas.DataFrame
        a source's timeline, one row per face per frame
    EmotionDetector(weights).detect(images) -> Detections
        the faces of uint8 BGR images; `Detections.to_supervision()` for supervision

Each name is imported on first use, so `import pipeline` loads neither the model runtime
(torch, ultralytics) nor pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Detections",
    "EmotionDetector",
    "RunReport",
    "TimelineError",
    "analyze_video",
    "read_timeline",
]

_HOMES = {
    "analyze_video": "pipeline.files.analyze",
    "RunReport": "pipeline.files.process",
    "read_timeline": "pipeline.sinks.timeline_table",
    "TimelineError": "pipeline.sinks.timeline_table",
    "EmotionDetector": "pipeline.engine.detector",
    "Detections": "pipeline.engine.batch",
    "ConfigError": "pipeline.core.errors",
}
"""The module each public name lives in."""

if TYPE_CHECKING:
    from pipeline.core.errors import ConfigError
    from pipeline.engine.batch import Detections
    from pipeline.engine.detector import EmotionDetector
    from pipeline.files.analyze import analyze_video
    from pipeline.files.process import RunReport
    from pipeline.sinks.timeline_table import TimelineError, read_timeline


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
