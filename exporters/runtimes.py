"""The optional packages each export format needs, and one clear error when they are not installed.

A plain install has PyTorch alone; the extras `openvino` and `onnx` add these runtimes.
"""

from __future__ import annotations

import importlib

from pipeline.core.errors import ModelError

FORMAT_MODULES = {"openvino": ("openvino",), "onnx": ("onnx", "onnxruntime", "onnxslim")}
"""What exporting to (ultralytics: onnxslim simplifies, ONNX Runtime checks) and running each format imports;
the extra of the same name installs it."""


def missing_modules(fmt: str) -> list[str]:
    """The modules `fmt` needs that do not import here (none for a format without optional packages)."""
    missing = []
    for name in FORMAT_MODULES.get(fmt, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require_modules(fmt: str, purpose: str) -> None:
    """ModelError naming the missing packages and the extra that installs them, unless `fmt` can run here."""
    missing = missing_modules(fmt)
    if missing:
        raise ModelError(f"{purpose} needs {', '.join(missing)}, not installed here: "
                         f"pip install 'emotion-stream[{fmt}]'")
