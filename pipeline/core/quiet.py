"""Keeping the model libraries' chatter out of programs that call emotion-stream from Python.

ultralytics logs through its own logger, `ultralytics`, with a handler on stdout; the level is
decided once, from YOLO_VERBOSE, when ultralytics is first imported. Setting YOLO_VERBOSE does
nothing in a program that imported ultralytics already, so the Python API raises that logger's
level to WARNING for the length of a call instead (and puts it back after): its warnings and
errors still show, its progress lines ("Loading ... for OpenVINO inference", export banners) do
not. The deprecation warnings PyTorch's tracer gives while ultralytics exports a model for the
CPU fast path are left out in the same way. Nothing here imports ultralytics or torch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator

ULTRALYTICS_LOGGER = "ultralytics"
QUIET_LEVEL = logging.WARNING
TRACER_MODULES = r"torch\.(jit|onnx)\b"
"""Modules whose warnings an export made for the caller gives (`torch.jit.trace` is deprecated, tracer warnings)."""

_lock = threading.Lock()
_depth = 0
_saved_level = logging.NOTSET
_warnings: warnings.catch_warnings | None = None


@contextlib.contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """Within the block, ultralytics logs warnings and errors only and PyTorch's tracer warnings are not shown;
    `verbose` leaves both as they are. Nested and concurrent blocks share one quiet spell: the level and the
    warning filters are put back when the last one ends."""
    if verbose:
        yield
        return
    _enter()
    try:
        yield
    finally:
        _exit()


def _enter() -> None:
    global _depth, _saved_level, _warnings
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        logger = logging.getLogger(ULTRALYTICS_LOGGER)
        _saved_level = logger.level
        if logger.getEffectiveLevel() < QUIET_LEVEL:
            logger.setLevel(QUIET_LEVEL)
        _warnings = warnings.catch_warnings()
        _warnings.__enter__()
        warnings.filterwarnings("ignore", module=TRACER_MODULES)


def _exit() -> None:
    global _depth, _warnings
    with _lock:
        _depth -= 1
        if _depth:
            return
        logging.getLogger(ULTRALYTICS_LOGGER).setLevel(_saved_level)
        if _warnings is not None:
            _warnings.__exit__(None, None, None)
            _warnings = None
