"""The locks: every package pinned with its hashes, in step with pyproject.toml, and installed exactly by `make`.

`locks/lock.sh` (`make lock`) writes them with uv; these checks need no network. A pyproject.toml edited without
`make lock` fails here, naming the requirement the lock no longer satisfies.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.locks import LOCKS, lock_target, locked_packages, locked_versions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

ROOT = LOCKS.parent
LOCK_FILES = sorted(LOCKS.glob("*.txt"))
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The project's requirements with these extras, the project's own extras (emotion-stream[cluster]) unfolded."""
    found, wanted, seen = [Requirement(text) for text in PROJECT["dependencies"]], list(extras), set()
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in map(Requirement, PROJECT["optional-dependencies"][extra]):
            if canonicalize_name(requirement.name) == canonicalize_name(PROJECT["name"]):
                wanted += requirement.extras
            else:
                found.append(requirement)
    return found


def _environment(python: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def test_there_is_a_lock_for_make_and_for_each_image() -> None:
    assert [path.name for path in LOCK_FILES] == ["dev.txt", "image-cpu.txt", "image-gpu.txt"]
    assert "--require-hashes --no-deps -r locks/dev.txt" in (ROOT / "Makefile").read_text()
    for dockerfile, lock in (("Dockerfile", "image-cpu.txt"), ("gpu/Dockerfile", "image-gpu.txt")):
        text = (ROOT / "deploy" / dockerfile).read_text()
        assert f"COPY locks/{lock} /tmp/{lock}" in text
        assert re.search(rf"pip install --no-cache-dir --require-hashes --no-deps -r /tmp/{lock}", text), dockerfile
        assert re.search(r"pip install --no-cache-dir --no-deps \. && (python3 -m )?pip check", text), dockerfile


@pytest.mark.parametrize("lock", LOCK_FILES, ids=lambda path: path.name)
def test_every_locked_package_is_pinned_with_hashes(lock: Path) -> None:
    packages = locked_packages(lock)
    assert len(packages) > 50
    assert not [name for name, package in packages.items() if not package.hashes], "packages without hashes"


@pytest.mark.parametrize("lock", LOCK_FILES, ids=lambda path: path.name)
def test_every_lock_satisfies_pyproject_and_the_holds(lock: Path) -> None:
    target, locked = lock_target(lock), locked_versions(lock)
    environment = _environment(target.python)
    holds = [Requirement(line) for line in (LOCKS / "holds.in").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    for requirement in _requirements(target.extras) + holds:
        name = canonicalize_name(requirement.name)
        if requirement.marker and not requirement.marker.evaluate(environment) or name in target.left_out:
            continue
        if requirement in holds and name not in locked:
            continue  # a hold on a package this lock does not need
        assert name in locked, f"{lock.name} lacks {requirement}: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), \
            f"{lock.name} pins {name}=={locked[name]}, outside {requirement}: run `make lock`"
    for name in target.left_out:
        assert name not in locked, f"{lock.name} holds {name}, which its image brings itself"


def test_the_environment_make_built_holds_exactly_the_lock() -> None:
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"not the environment `make` builds ({ROOT / '.venv'}): this one is {sys.prefix}")
    locked = locked_versions(LOCKS / "dev.txt")
    site_packages = sysconfig.get_paths()["purelib"]  # not the copies vendored inside packages (setuptools')
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version
                 for dist in importlib.metadata.distributions(path=[site_packages])}
    installed.pop(canonicalize_name(PROJECT["name"]))
    for tool in ("pip", "setuptools", "wheel"):  # the venv's own installer, unless the lock holds it
        if tool not in locked:
            installed.pop(tool, None)
    assert installed == locked
