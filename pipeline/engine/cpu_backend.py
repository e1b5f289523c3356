"""Which runtime runs `.pt` weights on the CPU: OpenVINO, ONNX Runtime or PyTorch, as installed.

A plain install has PyTorch alone; OpenVINO and ONNX Runtime come with the extras of the same
name. `auto` (the default) takes the fastest one installed; a runtime asked for by name must be there.
"""

from __future__ import annotations

import logging
from enum import Enum

from exporters.runtimes import missing_modules, require_modules
from pipeline.core.config import CHOICES
from pipeline.core.errors import ConfigError

log = logging.getLogger(__name__)


class CpuBackend(str, Enum):
    """The runtime of `.pt` weights on the CPU (`model.cpu_backend`)."""

    AUTO = "auto"
    """OpenVINO where installed, else ONNX Runtime, else PyTorch."""
    OPENVINO = "openvino"
    ONNX = "onnx"
    PYTORCH = "pytorch"


RUNTIME_NAMES = {CpuBackend.OPENVINO: "OpenVINO", CpuBackend.ONNX: "ONNX Runtime", CpuBackend.PYTORCH: "PyTorch"}
AUTO_ORDER = (CpuBackend.OPENVINO, CpuBackend.ONNX)
"""The exported runtimes `auto` tries, fastest first; PyTorch runs when neither is installed."""


def resolve_cpu_backend(requested: str) -> CpuBackend:
    """The runtime that runs: `requested` when it is installed (ModelError naming the extra otherwise);
    for `auto` the fastest installed one, with one log line when that is not OpenVINO."""
    try:
        backend = CpuBackend(requested)
    except ValueError:
        raise ConfigError(f"unknown CPU backend {requested!r}: use one of "
                          f"{', '.join(CHOICES['model.cpu_backend'])}") from None
    if backend is not CpuBackend.AUTO:
        require_modules(backend.value, f"--cpu-backend {backend.value} (model.cpu_backend)")
        return backend
    chosen = next((candidate for candidate in AUTO_ORDER if not missing_modules(candidate.value)), CpuBackend.PYTORCH)
    if chosen is not CpuBackend.OPENVINO:
        log.info("OpenVINO is not installed: running %s on the CPU; pip install 'emotion-stream[openvino]' "
                 "for the faster CPU path", RUNTIME_NAMES[chosen])
    return chosen
