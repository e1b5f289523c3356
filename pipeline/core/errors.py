"""Errors a user can act on: the CLI prints their message on one line, without a traceback."""


class EmotionStreamError(Exception):
    """Base for all user-facing errors; `exit_code` is what the CLI exits with."""

    exit_code = 2


class ConfigError(EmotionStreamError):
    """A configuration file or flag is malformed."""


class SourceError(EmotionStreamError):
    """A video source cannot be opened or is not video."""

    exit_code = 3


class ModelError(EmotionStreamError):
    """Weights are missing, unreadable or not a detection model."""

    exit_code = 4


class SinkError(EmotionStreamError):
    """A sink (Redis, files) cannot be written."""

    exit_code = 5


def shown(value: object, limit: int = 80) -> str:
    """`value` as repr for an error message, cut to about `limit` characters so a message stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ClusterError(EmotionStreamError):
    """The Ray cluster cannot be used: the `cluster` extra is missing, the address does not answer, or it has
    no room for an inference actor."""

    exit_code = 6
