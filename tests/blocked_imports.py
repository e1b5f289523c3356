"""The real command line in a process where some optional packages cannot be imported (a plain install)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def emotion_stream_without(args: list[str], tmp_path: Path, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`python -m pipeline.cli ARGS` with the modules `blocked` unimportable and its own export cache."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\n\nfor name in {blocked!r}:\n    sys.modules[name] = None\n")
    env = {**os.environ, "EMOTION_STREAM_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
