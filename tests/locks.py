"""Reading the locks (locks/*.txt, written by locks/lock.sh): their pins, hashes and the environment they target."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

LOCKS = Path(__file__).resolve().parents[1] / "locks"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")


@dataclass(frozen=True)
class LockedPackage:
    """One package of a lock: its pinned version and the hashes of its files."""

    name: str
    version: str
    hashes: tuple[str, ...]


def locked_packages(path: Path) -> dict[str, LockedPackage]:
    """The packages of a lock by canonical name."""
    packages: dict[str, LockedPackage] = {}
    name = version = None
    hashes: list[str] = []
    for line in path.read_text().splitlines() + [""]:
        pin = _PIN.match(line)
        if pin or not line.startswith(" "):
            if name:
                packages[name] = LockedPackage(name, version, tuple(hashes))
            name = version = None
            hashes = []
        if pin:
            name, version = canonicalize_name(pin.group(1)), pin.group(2)
        hashes += re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
    return packages


def locked_versions(path: Path) -> dict[str, str]:
    """The pinned version of every package of a lock, by canonical name."""
    return {name: package.version for name, package in locked_packages(path).items()}


@dataclass(frozen=True)
class LockTarget:
    """What a lock was resolved for, from its header: the Python version, the extras and what it leaves out."""

    python: str
    extras: tuple[str, ...]
    left_out: tuple[str, ...]


def lock_target(path: Path) -> LockTarget:
    """The target of a lock, read from the header line locks/lock.sh writes."""
    header = path.read_text().splitlines()[1]
    match = re.match(r"^# [\w-]+: CPython (\d+\.\d+), Linux x86_64; extras: ([^;]+)(?:; left out: (.*))?$", header)
    assert match, f"{path.name}: no target line: {header!r}"
    left_out = tuple(re.findall(r"\b(torch|torchvision|tensorrt)\b", match.group(3) or ""))
    return LockTarget(match.group(1), tuple(match.group(2).split()), left_out)
