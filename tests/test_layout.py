"""The layers of the code base: each uses only the ones below it (no import circles between them)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [
    "pipeline.core",
    "exporters",
    "pipeline.engine",
    "pipeline.faces",
    "pipeline.sinks",
    "pipeline.files",
    "pipeline.live",
    "pipeline.fleet",
    "training",
    "pipeline.cli",
]
"""Bottom to top, as the README's architecture section draws them."""


def _layer(module: str) -> int | None:
    matches = [i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")]
    return matches[-1] if matches else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_every_module_belongs_to_a_layer() -> None:
    for package in ("pipeline", "exporters", "training"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            if module not in ("pipeline", "pipeline.__init__"):
                assert _layer(module) is not None, f"{module} is in no layer: add it to the README and here"


def test_no_layer_imports_a_layer_above_it() -> None:
    upward = []
    for package in ("pipeline", "exporters", "training"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            own = _layer(module)
            for imported in _imports(path):
                target = _layer(imported)
                if own is not None and target is not None and target > own:
                    upward.append(f"{module} imports {imported}")
    assert not upward, "imports that reach up a layer:\n" + "\n".join(upward)


def test_the_command_line_and_decoder_processes_start_without_the_model_runtime() -> None:
    """Spawned decoder processes import the command line's module: it must not pull in torch."""
    import subprocess
    import sys

    code = ("import sys, pipeline.cli, pipeline.live.decoder_process, pipeline.files.segments; "
            "print(sorted({'torch', 'ultralytics', 'openvino'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
