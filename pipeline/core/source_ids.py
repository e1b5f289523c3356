"""Source ids: the contract's pattern, ids derived from file names, and the output folder an id names.

A source id matches `[A-Za-z0-9._-]{1,64}` and is neither `.` nor `..`, so it is always one
folder name under the output folder and never a way out of it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from pathlib import Path

from pipeline.core.errors import ConfigError, shown

SOURCE_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
RESERVED_SOURCE_IDS = frozenset({".", ".."})
"""Ids the pattern allows that name the output folder itself or its parent."""
MAX_SOURCE_ID = 64
_HASH_CHARS = 8
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]+")


def is_valid_source_id(source_id: str) -> bool:
    """True when `source_id` matches the contract (the whole string) and names no special folder."""
    return bool(SOURCE_ID_PATTERN.fullmatch(source_id)) and source_id not in RESERVED_SOURCE_IDS


def check_source_id(source_id: str, origin: str = "") -> str:
    """Return `source_id` if it is valid, else raise ConfigError naming it (and `origin`, e.g. a flag)."""
    if not is_valid_source_id(source_id):
        where = f"{origin}: " if origin else ""
        raise ConfigError(f"{where}invalid source id {shown(source_id)}: "
                          "use 1-64 of A-Z a-z 0-9 . _ - (not '.' or '..')")
    return source_id


def source_id_for_name(name: str) -> str:
    """A valid id for the name `name`: kept as is when it is already one; otherwise accents are
    dropped (é to e), other characters become `_`, and a hash of the whole name is appended, so
    different names give different ids (面接 and 会議 do not both become `__`)."""
    if is_valid_source_id(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    readable = _NOT_ALLOWED.sub("_", ascii_name).strip("_")
    return _with_hash(readable or "video", name)


def source_id_for(path: str | Path) -> str:
    """The id of a video file: its name without the suffix, made valid by `source_id_for_name`."""
    return source_id_for_name(Path(path).stem)


def distinct_source_ids(paths: list[Path]) -> list[str]:
    """Ids for the files of one job, one per path and all different.

    Each file gets `source_id_for`; files that would share an id are told apart by their whole
    names (`a.mp4` and `a.mkv`), and files of the same name in different folders by a hash of
    their full path. The same file given twice keeps one id: callers refuse or merge repeats.
    """
    ids = [source_id_for(path) for path in paths]
    shared = Counter(ids)
    ids = [source_id_for_name(path.name) if shared[id_] > 1 else id_ for path, id_ in zip(paths, ids)]
    shared = Counter(ids)
    return [_with_hash(id_, str(path.resolve())) if shared[id_] > 1 else id_ for path, id_ in zip(paths, ids)]


def output_folder(root: str | Path, source_id: str) -> Path:
    """The folder of one source's outputs: `root/source_id`, after checking the id (so it stays in `root`)."""
    return Path(root) / check_source_id(source_id)


def _with_hash(readable: str, original: str) -> str:
    """`readable`, cut to fit, with a stable short hash of `original` appended."""
    digest = hashlib.sha256(original.encode("utf-8", "surrogateescape")).hexdigest()[:_HASH_CHARS]
    return f"{readable[: MAX_SOURCE_ID - _HASH_CHARS - 1]}-{digest}"

