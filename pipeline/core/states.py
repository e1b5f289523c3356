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
    INTERRUPTED = "interrupted"
    """The run was stopped before the source ended; a re-run of the same file resumes it."""

    @property
    def final(self) -> bool:
        """True for states a source never leaves within one run."""
        return self in (SourceState.ENDED, SourceState.FAILED, SourceState.INTERRUPTED)

    @property
    def finished(self) -> bool:
        """True when the source's streams are complete (ended or failed); an interrupted source is
        not: a re-run of the same file continues its streams."""
        return self in (SourceState.ENDED, SourceState.FAILED)

    @property
    def closes_tracks(self) -> bool:
        """True for states after which no face can appear again (each open track gets its face_exit);
        an interrupted source keeps its tracks open for the run that resumes it."""
        return self.finished

    def allows(self, target: SourceState) -> bool:
        """True when a source in this state may move to `target`."""
        return target in _ALLOWED[self]


_ALLOWED: dict[SourceState, frozenset[SourceState]] = {
    SourceState.CONNECTING: frozenset(
        {SourceState.LIVE, SourceState.RECONNECTING, SourceState.ENDED, SourceState.FAILED, SourceState.INTERRUPTED}),
    SourceState.LIVE: frozenset({SourceState.RECONNECTING, SourceState.ENDED, SourceState.FAILED,
                                 SourceState.INTERRUPTED}),
    SourceState.RECONNECTING: frozenset({SourceState.LIVE, SourceState.ENDED, SourceState.FAILED,
                                         SourceState.INTERRUPTED}),
    SourceState.ENDED: frozenset(),
    SourceState.FAILED: frozenset(),
    SourceState.INTERRUPTED: frozenset(),
}
