"""One source's whole downstream: tracking and events, then its file and Redis sinks and its summary.

The engine calls `track` and `status_events` on its post thread and `write` and `status` on
its sink thread, always in the source's frame order. The frame JSON is made once per batch
and shared by both sinks, and every event (status changes too) gets its id here, once, in
order: its entry id in the source's events stream, from its pts for files (a re-run gives
the same ids) and from the wall clock for live sources, the same in Redis and events.jsonl.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.core.contract import StreamIdAllocator
from pipeline.core.states import SourceState
from pipeline.core.types import StatusChange
from pipeline.core.uris import mask_uri
from pipeline.engine.batch import Detections
from pipeline.faces.analytics import SourceAnalytics
from pipeline.faces.events import FaceEvent
from pipeline.faces.summary import TimelineSummary
from pipeline.sinks.files import FileSink
from pipeline.sinks.payload import EventRecord, frame_payloads
from pipeline.sinks.redis_sink import RedisSink

log = logging.getLogger(__name__)


class SourceOutput:
    """Analytics, sinks and summary of one source; implements the engine's `SourceOutput`."""

    def __init__(
        self,
        source_id: str,
        names: list[str],
        analytics: SourceAnalytics,
        files: FileSink | None = None,
        redis: RedisSink | None = None,
        on_status: Callable[[StatusChange], None] | None = None,
        live: bool = False,
    ) -> None:
        """`live`: event ids come from the wall clock (a camera), not from the presentation time (a file)."""
        self.source_id = source_id
        self.live = live
        self._event_ids = StreamIdAllocator()
        self._last_pts = 0.0
        self.names = names
        self.analytics = analytics
        self.files = files
        self.redis = redis
        self.on_status = on_status
        self.summary = TimelineSummary()
        self.state = SourceState.CONNECTING
        self.failure: str | None = None
        self.problem: str | None = None
        """Why the source failed, upstream (its decoder) or downstream (`failure`)."""
        self.went_live = False
        """True once the source delivered (a file: it opened)."""

    def track(self, detections: Detections) -> list[FaceEvent]:
        """Track ids into `detections`, and the events of these frames."""
        return self.analytics.process(detections)

    def status_events(self, change: StatusChange) -> list[FaceEvent]:
        """Ending or failing closes every open track (face_exit; an interruption leaves them for the run
        that resumes it); a known frame rate sets the event clock."""
        interval = change.info.get("frame_interval_s")
        if interval:
            self.analytics.events.frame_interval_s = interval
        return self.analytics.finish(time.time()) if change.state.closes_tracks else []

    def write(self, detections: Detections | None, events: list[FaceEvent]) -> int:
        """Frames to the timeline files and Redis, events to events.jsonl and Redis; returns frames written."""
        payloads = frame_payloads(detections, self.names) if detections is not None else []
        if payloads:
            self._last_pts = payloads[-1].frame.pts
        records = [self._record(event) for event in events]
        if self.files is not None:
            self.files.write(payloads)
            self.files.write_events(records)
        if self.redis is not None:
            self.redis.write(payloads)
            self.redis.events(records)
        self.summary.add(detections, self.names, events)
        return len(payloads)

    def status(self, change: StatusChange) -> None:
        """Record a state change: its source_status event (Redis, and events.jsonl once the source went live),
        the Redis status hash."""
        self.state = change.state
        record = self._status_record(change.state, change.reason)
        if change.state.final:
            self.summary.damaged_packets = change.info.get("damaged_packets", 0)
        if change.state is SourceState.FAILED:
            self.problem = change.reason or "failed"
        elif change.state.final and self.summary.damaged_packets:
            self.problem = self.problem or change.reason  # a damaged file is a problem even when it ended
        self.went_live = self.went_live or change.state is SourceState.LIVE
        if self.files is not None and self.went_live:  # a file that never opened gets no output folder
            self.files.open()  # a job of many files holds open only the files being processed
            self.files.write_events([record])
            if change.state.final:
                self.files.close()
        if self.redis is not None:
            self.redis.damaged_packets = self.summary.damaged_packets
            self.redis.status(change.state, change.reason, record)
        if self.on_status is not None:
            self.on_status(change)

    def fail(self, reason: str) -> None:
        """The source failed downstream: nothing more is written for it; Redis is told where it still answers (not
        the files: they may be what failed)."""
        self.failure = self.problem = reason
        self.state = SourceState.FAILED
        record = self._status_record(SourceState.FAILED, reason)
        if self.redis is not None:
            try:
                self.redis.status(SourceState.FAILED, reason, record)
            except Exception:  # the Redis side may be what failed
                log.debug("%s: could not record the failure in Redis", self.source_id, exc_info=True)

    def _record(self, event: FaceEvent) -> EventRecord:
        """`event` with the next id of the source's events stream (placed after what an earlier run of the same
        record left, when that run never wrote it: see `RedisSink.placed`)."""
        clock = event.wall_time if self.live else event.pts
        event_id = self._event_ids.next(int(round(clock * 1000)))
        return EventRecord(self.redis.placed(event_id, event.type) if self.redis is not None else event_id, event)

    def _status_record(self, state: SourceState, reason: str) -> EventRecord:
        """The source_status event of a change of state, at the last frame's pts."""
        fields = {"state": state.value, "reason": mask_uri(reason)}
        return self._record(FaceEvent("source_status", self.source_id, self._last_pts, time.time(), fields))

    def close(self) -> None:
        """Flush and close the file sink (Redis commands are flushed by the shared writer)."""
        if self.files is not None:
            self.files.close()
