"""The contract's records, made once for every sink: frames from a batch's arrays, events with their ids.

One record, one shape (pipeline/core/schemas/): a frame or an event is the same JSON object in
timeline.jsonl and events.jsonl, in `subscribe --json` and on the pub/sub channel. A Redis
stream entry holds the same record flat, by one rule: a field holds the record's value of the
same name, the text as it is where the schema types it as a string, its JSON text otherwise;
`source` is the id in the key and an event's `event_id` the entry's id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from pipeline.core.contract import SCHEMA_VERSION
from pipeline.engine.batch import UNTRACKED, Detections, FrameInfo
from pipeline.faces.events import FaceEvent


@dataclass(frozen=True)
class FramePayload:
    """One processed frame as the contract encodes it: its faces as objects and as JSON."""

    frame: FrameInfo
    faces: list[dict]
    faces_json: str


def frame_payloads(detections: Detections, names: list[str]) -> list[FramePayload]:
    """The contract's face objects of every frame of a batch, made from its arrays in one pass.

    A face is `{"id": track id or null, "box": [x1, y1, x2, y2], "emotion": name, "score": s,
    "scores": {name: s, ...}}`, boxes to 0.1 px and scores to 4 decimals.
    """
    boxes = np.round(detections.xyxy.astype(np.float64), 1).tolist()
    confidence = np.round(detections.confidence.astype(np.float64), 4).tolist()
    scores = np.round(detections.scores.astype(np.float64), 4).tolist()
    track_ids = detections.tracker_id.tolist()
    emotions = [names[c] for c in detections.class_id.tolist()]
    payloads = []
    for number, frame in enumerate(detections.frames):
        rows = detections.rows(number)
        faces = [
            {"id": None if track_ids[r] == UNTRACKED else track_ids[r], "box": boxes[r], "emotion": emotions[r],
             "score": confidence[r], "scores": dict(zip(names, scores[r]))}
            for r in range(rows.start, rows.stop)
        ]
        payloads.append(FramePayload(frame, faces, json.dumps(faces, separators=(",", ":"))))
    return payloads


def frame_line(payload: FramePayload, model_id: str, version: str, lat_ms: int) -> str:
    """The frame record as one line of JSON (its faces' JSON made once, shared with Redis)."""
    frame = payload.frame
    return (f'{{"v":{json.dumps(version)},"source":{json.dumps(frame.source_id)},"frame":{frame.index},'
            f'"pts":{round(frame.pts, 3)},"ts":{int(frame.wall_time * 1000)},"lat":{lat_ms},'
            f'"faces":{payload.faces_json},"model":{json.dumps(model_id)}}}')


def frame_fields(payload: FramePayload, model_id: str, version: str = SCHEMA_VERSION) -> dict[str, str]:
    """The fields of one frames-stream entry of contract `version` (the writer adds `lat` as it sends them)."""
    frame = payload.frame
    return {
        "v": version,
        "frame": str(frame.index),
        "pts": f"{frame.pts:.3f}",
        "ts": str(int(frame.wall_time * 1000)),
        "faces": payload.faces_json,
        "model": model_id,
    }


@dataclass(frozen=True)
class EventRecord:
    """An event with its id in its source's events stream (`<ms>-<seq>`), given once for every sink."""

    event_id: str
    event: FaceEvent

    def to_json(self, version: str) -> dict:
        """The event record."""
        event = self.event
        return {"v": version, "event_id": self.event_id, "type": event.type, "source": event.source_id,
                "ts": int(event.wall_time * 1000), "pts": round(event.pts, 3), **event.fields}


def event_fields(record: EventRecord, version: str) -> dict[str, str]:
    """The fields of the record's events-stream entry (not `source` and `event_id`: the key and the entry id)."""
    event = record.event
    fields = {"v": version, "type": event.type, "ts": str(int(event.wall_time * 1000)), "pts": f"{event.pts:.3f}"}
    return fields | {key: value if isinstance(value, str) else json.dumps(value) for key, value in event.fields.items()}
