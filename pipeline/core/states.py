"""Source states: one enum and the transitions it allows."""

from __future__ import annotations

from enum import Enum


class SourceState(str, Enum):
    """Where a source stands; the value is the name used in Redis and in logs."""

    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """True for states a source never leaves."""
        return self in (SourceState.ENDED, SourceState.FAILED)

    def allows(self, target: SourceState) -> bool:
        """True when a source in this state may move to `target`."""
        return target in _ALLOWED[self]


_ALLOWED: dict[SourceState, frozenset[SourceState]] = {
    SourceState.CONNECTING: frozenset(
        {SourceState.LIVE, SourceState.RECONNECTING, SourceState.ENDED, SourceState.FAILED}),
    SourceState.LIVE: frozenset({SourceState.RECONNECTING, SourceState.ENDED, SourceState.FAILED}),
    SourceState.RECONNECTING: frozenset({SourceState.LIVE, SourceState.ENDED, SourceState.FAILED}),
    SourceState.ENDED: frozenset(),
    SourceState.FAILED: frozenset(),
}
