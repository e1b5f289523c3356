"""Faces over time: per-track smoothing, a stable emotion with hysteresis, and the events.

- `face_enter` / `face_exit`: a track appears; a track has not been seen for `exit_after_s`
  (or the source ended).
- `emotion_change`: the smoothed probabilities of another emotion lead the track's stable
  emotion by `change_margin` for `change_min_ms`; flicker shorter than that changes nothing.
- A new track's stable emotion (its baseline) settles over its first `baseline_ms`;
  no change or micro-expression is reported before that.
- `micro_expression`: the per-frame emotion departs from the stable one and returns within
  `micro_min_ms`..`micro_max_ms` (default 40-500 ms: 1/25 to 1/5 s), on at least
  `micro_min_frames` frames, peaking at `micro_min_score` or more. Only every-frame
  processing can see them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.config import EventSettings
from pipeline.engine.batch import UNTRACKED, Detections, FrameInfo


@dataclass(frozen=True)
class FaceEvent:
    """One event of the Redis contract (type-specific fields in `fields`)."""

    type: str
    source_id: str
    pts: float
    wall_time: float
    fields: dict


class _FaceView:
    """One row of a `Detections`, read the way the temporal model needs it."""

    def __init__(self, detections: Detections, row: int, names: list[str]) -> None:
        self.track_id = int(detections.tracker_id[row])
        self.emotion = names[int(detections.class_id[row])]
        self.score = float(detections.confidence[row])
        self.scores = detections.scores[row].astype(np.float64)
        self.box = [round(float(v), 1) for v in detections.xyxy[row]]


@dataclass
class _Departure:
    frames: list[tuple[float, str, float]] = field(default_factory=list)
    """(pts, per-frame emotion, its score) of consecutive frames away from the stable emotion."""


@dataclass
class _Track:
    track_id: int
    first_pts: float
    last_pts: float
    smoothed: np.ndarray
    stable: str
    candidate: str | None = None
    candidate_since: float = 0.0
    departure: _Departure = field(default_factory=_Departure)


class EventDetector:
    """Turns one source's tracked faces, frame after frame, into events."""

    def __init__(self, source_id: str, class_names: list[str], settings: EventSettings | None = None,
                 frame_interval_s: float = 1 / 30) -> None:
        self.source_id = source_id
        self.names = class_names
        self.settings = settings or EventSettings()
        self.frame_interval_s = frame_interval_s
        self._tracks: dict[int, _Track] = {}

    def update(self, detections: Detections, frame: int) -> list[FaceEvent]:
        """Events caused by frame number `frame` of a batch (call for every frame, in order)."""
        result = detections.frames[frame]
        events: list[FaceEvent] = []
        rows = detections.rows(frame)
        for row in range(rows.start, rows.stop):
            if detections.tracker_id[row] != UNTRACKED:
                events += self._observe(_FaceView(detections, row, self.names), result)
        for track in list(self._tracks.values()):
            if result.pts - track.last_pts > self.settings.exit_after_s:
                events.append(self._exit(track, result.wall_time))
        return events

    def finish(self, wall_time: float) -> list[FaceEvent]:
        """face_exit for every open track (the source ended)."""
        return [self._exit(track, wall_time) for track in list(self._tracks.values())]

    def _observe(self, face: _FaceView, result: FrameInfo) -> list[FaceEvent]:
        scores = face.scores
        track = self._tracks.get(face.track_id)
        if track is None:
            track = _Track(face.track_id, result.pts, result.pts, scores, face.emotion)
            self._tracks[face.track_id] = track
            return [self._event("face_enter", result, track, emotion=face.emotion, box=face.box)]
        track.last_pts = result.pts
        a = self.settings.smoothing
        track.smoothed = a * scores + (1 - a) * track.smoothed
        if (result.pts - track.first_pts) * 1000 < self.settings.baseline_ms:
            track.stable = self.names[int(np.argmax(track.smoothed))]  # the baseline settles first
            return []
        events = self._change(track, result)
        if not events:
            events = self._micro(track, face, result)
        return events

    def _change(self, track: _Track, result: FrameInfo) -> list[FaceEvent]:
        leader = self.names[int(np.argmax(track.smoothed))]
        lead = track.smoothed[self.names.index(leader)] - track.smoothed[self.names.index(track.stable)]
        if leader == track.stable or lead < self.settings.change_margin:
            track.candidate = None
            return []
        if track.candidate != leader:
            track.candidate, track.candidate_since = leader, result.pts
            return []
        if (result.pts - track.candidate_since) * 1000 + 1e-6 < self.settings.change_min_ms:
            return []
        previous, track.stable, track.candidate = track.stable, leader, None
        track.departure = _Departure()  # the departure was this change, not a flash
        return [self._event("emotion_change", result, track, **{
            "from": previous, "to": leader, "onset": round(track.candidate_since, 3),
            "score": round(float(track.smoothed[self.names.index(leader)]), 4)})]

    def _micro(self, track: _Track, face: _FaceView, result: FrameInfo) -> list[FaceEvent]:
        run = track.departure.frames
        if face.emotion != track.stable:
            run.append((result.pts, face.emotion, face.score))
            return []
        if not run:
            return []
        track.departure = _Departure()
        emotion, count = Counter(name for _pts, name, _score in run).most_common(1)[0]
        flash = [(pts, score) for pts, name, score in run if name == emotion]
        onset, offset = run[0][0], run[-1][0]
        duration_ms = (offset - onset + self.frame_interval_s) * 1000
        apex, peak = max(flash, key=lambda item: item[1])
        s = self.settings
        if (len(run) < s.micro_min_frames or count * 3 < len(run) * 2 or peak < s.micro_min_score
                or not s.micro_min_ms <= duration_ms <= s.micro_max_ms):
            return []
        return [self._event("micro_expression", result, track, emotion=emotion, baseline=track.stable,
                            onset=round(onset, 3), apex=round(apex, 3), offset=round(offset, 3),
                            duration_ms=round(duration_ms), peak=round(peak, 4))]

    def _exit(self, track: _Track, wall_time: float) -> FaceEvent:
        del self._tracks[track.track_id]
        return FaceEvent("face_exit", self.source_id, track.last_pts, wall_time, {
            "id": track.track_id, "emotion": track.stable,
            "duration_ms": round((track.last_pts - track.first_pts + self.frame_interval_s) * 1000)})

    def _event(self, kind: str, result: FrameInfo, track: _Track, **fields: object) -> FaceEvent:
        return FaceEvent(kind, self.source_id, result.pts, result.wall_time, {"id": track.track_id, **fields})
