"""The sidecar every exported artifact gets, and that the pipeline reads.

`<artifact>.emotion.json` beside a file artifact, `emotion.json` inside a folder artifact:
class names, input size, max batch, dynamic shapes, precision, the source weights' hash and
the export command.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SIDECAR_NAME = "emotion.json"
SIDECAR_SUFFIX = ".emotion.json"


@dataclass(frozen=True)
class ExportMetadata:
    """What an exported artifact is and where it came from."""

    format: str
    class_names: list[str]
    imgsz: int
    max_batch: int
    dynamic: bool
    precision: str
    """fp32, fp16, bf16 or int8."""
    source_weights: str
    source_sha256: str
    command: str
    extra: dict = field(default_factory=dict)


def sidecar_path(artifact: str | Path) -> Path:
    """Where the sidecar of `artifact` lives."""
    artifact = Path(artifact)
    return artifact / SIDECAR_NAME if artifact.is_dir() else artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def write_sidecar(artifact: str | Path, metadata: ExportMetadata) -> Path:
    """Write the sidecar of `artifact`."""
    path = sidecar_path(artifact)
    path.write_text(json.dumps(asdict(metadata), indent=2))
    return path


def read_sidecar(artifact: str | Path) -> ExportMetadata | None:
    """The sidecar of `artifact`, or None when it has none."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    return ExportMetadata(**json.loads(path.read_text()))
