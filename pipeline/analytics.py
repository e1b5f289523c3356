"""Per-source analytics after detection: track ids, then events."""

from __future__ import annotations

from pipeline.config import EventSettings, TrackerSettings
from pipeline.events import EventDetector, FaceEvent
from pipeline.tracking import FaceTracker
from pipeline.types import FrameResult


class SourceAnalytics:
    """ByteTrack ids and the temporal model of one source; feed it every result, in order."""

    def __init__(
        self,
        source_id: str,
        class_names: list[str],
        tracking: TrackerSettings,
        events: EventSettings,
        frame_interval_s: float,
    ) -> None:
        self.enabled = tracking.enabled
        self.tracker = FaceTracker(tracking, class_names)
        self.events = EventDetector(source_id, class_names, events, frame_interval_s)

    def process(self, results: list[FrameResult]) -> tuple[list[FrameResult], list[FaceEvent]]:
        """The results with track ids, and the events they caused."""
        if not self.enabled:
            return results, []
        tracked, events = [], []
        for result in results:
            result = FrameResult(result.source_id, result.index, result.pts, result.wall_time, result.width,
                                 result.height, self.tracker.update(result.faces))
            tracked.append(result)
            events += self.events.update(result)
        return tracked, events

    def finish(self, wall_time: float) -> list[FaceEvent]:
        """face_exit for every open track."""
        return self.events.finish(wall_time) if self.enabled else []
