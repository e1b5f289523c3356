"""Per-source analytics after detection: track ids, then events."""

from __future__ import annotations

from pipeline.core.config import EventSettings, TrackerSettings
from pipeline.engine.batch import Detections
from pipeline.faces.events import EventDetector, FaceEvent
from pipeline.faces.tracking import FaceTracker


class SourceAnalytics:
    """ByteTrack ids and the temporal model of one source; feed it every frame, in order."""

    def __init__(
        self,
        source_id: str,
        class_names: list[str],
        tracking: TrackerSettings,
        events: EventSettings,
        frame_interval_s: float,
    ) -> None:
        self.enabled = tracking.enabled
        self.tracker = FaceTracker(tracking)
        self.events = EventDetector(source_id, class_names, events, frame_interval_s)

    def process(self, detections: Detections) -> list[FaceEvent]:
        """Fill `detections.tracker_id` (frames of this source, in order) and return the events they caused."""
        if not self.enabled:
            return []
        events: list[FaceEvent] = []
        for frame in range(len(detections.frames)):
            rows = detections.rows(frame)
            detections.tracker_id[rows] = self.tracker.update(
                detections.xyxy[rows], detections.confidence[rows], detections.class_id[rows])
            events += self.events.update(detections, frame)
        return events

    def finish(self, wall_time: float) -> list[FaceEvent]:
        """face_exit for every open track."""
        return self.events.finish(wall_time) if self.enabled else []
