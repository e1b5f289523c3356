"""What a Redis error reply means for a write, and where rejected commands are kept.

A reply is one of three kinds: the entry was already there (an explicit stream id Redis
holds already: a replay or a re-run), Redis refuses writes for now (out of memory, read-only
replica, failed persistence, busy: retried until it takes them), or Redis rejects this
command for good (a key of another type, no permission): kept in a file, counted, reported.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import redis

DUPLICATE_ID = "equal or smaller than the target stream top item"
_REFUSED_FOR_NOW = ("OOM", "READONLY", "MISCONF", "BUSY", "TRYAGAIN", "MASTERDOWN", "NOREPLICAS", "CLUSTERDOWN")


class ReplyKind(str, Enum):
    """How the writer treats an error reply."""

    DUPLICATE = "duplicate"
    REFUSED = "refused"
    """Redis refuses writes for now; the commands are retried, then spilled."""
    REJECTED = "rejected"
    """This command can never be written as it is; it is kept in the rejected file."""


def error_code(error: redis.ResponseError) -> str:
    """The error's code as Redis names it (OOM, WRONGTYPE, NOPERM, CLUSTERDOWN, ...), ERR when it has none."""
    if getattr(error, "status_code", None):  # redis-py keeps the code it took off the message
        return error.status_code
    by_class = {redis.exceptions.OutOfMemoryError: "OOM", redis.exceptions.ReadOnlyError: "READONLY",
                redis.exceptions.NoPermissionError: "NOPERM"}
    for cls, code in by_class.items():
        if isinstance(error, cls):
            return code
    first = str(error).split(" ", 1)[0]
    return first if first.isupper() and first.isalpha() else "ERR"


def describe(error: redis.ResponseError) -> str:
    """The error as Redis said it, code first, without redis-py's pipeline preamble."""
    text = str(error).split(" caused error: ", 1)[-1]
    code = error_code(error)
    return text if text.startswith(code) else f"{code} {text}"


def classify(error: redis.ResponseError) -> ReplyKind:
    """The kind of an error reply to a write."""
    if DUPLICATE_ID in str(error):
        return ReplyKind.DUPLICATE
    return ReplyKind.REFUSED if error_code(error) in _REFUSED_FOR_NOW else ReplyKind.REJECTED


class RejectedCommands:
    """Commands Redis rejected for good, appended to a JSONL file (`{"error", "command"}` per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def keep(self, command: list, error: redis.ResponseError) -> None:
        """Append one rejected command with the error Redis gave."""
        line = json.dumps({"error": describe(error), "command": command}, separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
