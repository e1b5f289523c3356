"""Safe YAML reading for every YAML file the project reads: one short line for every bad file.

On top of `yaml.SafeLoader` this refuses aliases (`*name`: an alias bomb of a few hundred
bytes expands to gigabytes), nesting deeper than `MAX_DEPTH`, and duplicate keys (the later
value would silently win). Files are read only when they are regular files (never a FIFO that
blocks or a device such as /dev/zero that never ends) and of at most `MAX_FILE_BYTES`. Missing
files, folders, other file kinds, binary files and syntax errors become a `ConfigError` of one
line naming the file and, where known, the line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import ConfigError, shown

MAX_DEPTH = 64
"""Nesting levels of collections allowed; real configs use three or four."""
MAX_FILE_BYTES = 1 << 20
"""Largest YAML file read (1 MiB); real configs are a few KiB."""
_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))
_MESSAGE_LIMIT = 160


class _RefusedYaml(yaml.YAMLError):
    """A construct this loader refuses, with the line where it is."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(f"{problem} at line {mark.line + 1}")


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader without aliases, without duplicate keys and with bounded nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _RefusedYaml(f"aliases (*{event.anchor}) are not allowed", event.start_mark)
        if self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            if self._depth >= MAX_DEPTH:
                raise _RefusedYaml(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeConstructor refuses it below
                continue
            if repeated:
                raise _RefusedYaml(f"duplicate key {shown(key, 40)}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def load_yaml_file(path: str | Path, what: str = "file") -> Any:
    """The YAML document in `path` (None when empty); ConfigError naming `what` and the path otherwise."""
    path = Path(path)
    try:
        data = _read_regular_file(path, what)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (binary or not UTF-8)") from None
    return load_yaml_text(text, str(path))


def _read_regular_file(path: Path, what: str) -> bytes:
    """The bytes of `path` when it is a regular file of at most MAX_FILE_BYTES; ConfigError otherwise.

    Opened without blocking (a FIFO without a writer would wait forever) and checked on the open
    file, so it cannot be swapped for another kind between the check and the read."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = next((name for is_kind, name in _FILE_KINDS if is_kind(mode)), "a special file")
        raise ConfigError(f"{what} {path} is {kind}, not a YAML file")
    with open(descriptor, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_FILE_BYTES >> 20} MiB: not a YAML file this reads")
    return data


def load_yaml_text(text: str, origin: str) -> Any:
    """The YAML document in `text`; ConfigError naming `origin` when it is not valid or refused."""
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML ({_describe(exc)})") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not valid YAML (nested too deeply)") from None


def _describe(exc: yaml.YAMLError) -> str:
    """The problem of a YAML error and its line, on one short line."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        text = exc.problem + (f" at line {mark.line + 1}" if mark else "")
    else:
        text = str(exc)
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."
