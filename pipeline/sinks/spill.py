"""A FIFO that holds a bounded number of items in memory and spills the rest to a file."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any


class SpillBuffer:
    """First in, first out; at most `memory_items` in memory, later items go to `path` (JSONL).

    Order is kept across the boundary: once anything is on disk, new items follow it there
    until the disk part has been read back. Items must be JSON-serialisable. Items left on
    disk by an earlier process (a crash, an outage that outlived it) come first.
    """

    def __init__(self, memory_items: int, path: Path) -> None:
        self.memory_items = memory_items
        self.path = path
        self._memory: deque = deque()
        self._on_disk = 0
        self._read_offset = 0
        self._lock = threading.Lock()
        if path.exists():
            with open(path, encoding="utf-8") as handle:
                self._on_disk = sum(1 for line in handle if line.endswith("\n"))

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory) + self._on_disk

    @property
    def spilled(self) -> int:
        """Items currently on disk."""
        return self._on_disk

    def extend(self, items: list[Any]) -> None:
        """Append items at the end."""
        with self._lock:
            room = 0 if self._on_disk else max(0, self.memory_items - len(self._memory))
            self._memory.extend(items[:room])
            rest = items[room:]
            if rest:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(item, separators=(",", ":")) + "\n" for item in rest)
                self._on_disk += len(rest)

    def peek(self, count: int) -> list[Any]:
        """The first `count` items (fewer if there are fewer), without removing them."""
        with self._lock:
            if not self._memory and self._on_disk:
                self._load()
            return list(islice(self._memory, count))

    def drop(self, count: int) -> None:
        """Remove the first `count` items (after `peek` returned them)."""
        self.settle(count, [])

    def settle(self, count: int, waiting: list[Any]) -> None:
        """Remove the first `count` items (after `peek` returned them) but `waiting`, some of them, which stay
        first, in their order."""
        with self._lock:
            for _ in range(min(count, len(self._memory))):
                self._memory.popleft()
            self._memory.extendleft(reversed(waiting))

    def items(self) -> Iterator[Any]:
        """Every item, first to last, without removing any (reads the file: for reports, not hot paths)."""
        with self._lock:
            held = list(self._memory)
            lines: list[str] = []
            if self._on_disk:
                with open(self.path, encoding="utf-8") as handle:
                    handle.seek(self._read_offset)
                    lines = [line for line in handle if line.endswith("\n")]
        yield from held
        yield from (json.loads(line) for line in lines)

    def persist(self) -> None:
        """Move the items held in memory to the file, in front of those already there, so that
        nothing is lost when the process ends; the next buffer on this path reads them first."""
        with self._lock:
            if not self._memory:
                return
            rest: list[str] = []
            if self._on_disk:
                with open(self.path, encoding="utf-8") as handle:
                    handle.seek(self._read_offset)
                    rest = [line for line in handle if line.endswith("\n")]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            staging = self.path.with_name(self.path.name + ".tmp")
            with open(staging, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(item, separators=(",", ":")) + "\n" for item in self._memory)
                handle.writelines(rest)
            staging.replace(self.path)
            self._on_disk += len(self._memory)
            self._memory.clear()
            self._read_offset = 0

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            handle.seek(self._read_offset)
            for _ in range(min(self.memory_items, self._on_disk)):
                line = handle.readline()
                if not line:
                    break
                self._memory.append(json.loads(line))
                self._on_disk -= 1
            self._read_offset = handle.tell()
        if not self._on_disk:
            self.path.unlink(missing_ok=True)
            self._read_offset = 0
