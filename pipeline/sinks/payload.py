"""Frames as the Redis contract encodes them, made from a batch's arrays once for every sink."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from pipeline.core.contract import SCHEMA_VERSION
from pipeline.engine.batch import UNTRACKED, Detections, FrameInfo


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


def frame_fields(payload: FramePayload, model_id: str, version: str = SCHEMA_VERSION) -> dict[str, str]:
    """The fields of one frames-stream entry of contract `version`."""
    frame = payload.frame
    return {
        "v": version,
        "frame": str(frame.index),
        "pts": f"{frame.pts:.3f}",
        "ts": str(int(frame.wall_time * 1000)),
        "faces": payload.faces_json,
        "model": model_id,
    }
