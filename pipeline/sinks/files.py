"""File sink: the timeline as JSONL (one line per frame) and CSV (one row per face per frame)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline.errors import SinkError
from pipeline.events import FaceEvent
from pipeline.types import FrameResult


class FileSink:
    """Writes `timeline.jsonl` and `timeline.csv` under `folder`, flushed after every batch.

    A run that is interrupted or fails later keeps every batch written so far.
    """

    def __init__(self, folder: str | Path, class_names: list[str], model_id: str) -> None:
        self.folder = Path(folder)
        self.class_names = class_names
        self.model_id = model_id
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.folder / "timeline.jsonl", "w", encoding="utf-8")
            self._csv_file = open(self.folder / "timeline.csv", "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise SinkError(f"cannot write outputs to {self.folder}: {exc.strerror}") from None
        (self.folder / "events.jsonl").unlink(missing_ok=True)
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(
            ["source", "frame", "pts", "ts", "face", "id", "x1", "y1", "x2", "y2", "emotion", "score"]
            + [f"p_{name}" for name in class_names]
        )

    @property
    def jsonl_path(self) -> Path:
        """Path of the per-frame JSONL timeline."""
        return self.folder / "timeline.jsonl"

    @property
    def csv_path(self) -> Path:
        """Path of the per-face CSV timeline."""
        return self.folder / "timeline.csv"

    def write(self, results: list[FrameResult]) -> None:
        """Append one batch to both files and flush them."""
        for result in results:
            record = {
                "source": result.source_id,
                "frame": result.index,
                "pts": round(result.pts, 3),
                "ts": int(result.wall_time * 1000),
                "faces": [face.to_json() for face in result.faces],
                "model": self.model_id,
            }
            self._jsonl.write(json.dumps(record, separators=(",", ":")) + "\n")
            for number, face in enumerate(record["faces"]):
                self._csv.writerow(
                    [result.source_id, result.index, record["pts"], record["ts"], number, face["id"]]
                    + face["box"]
                    + [face["emotion"], face["score"]]
                    + [face["scores"][name] for name in self.class_names]
                )
        self._jsonl.flush()
        self._csv_file.flush()

    def write_events(self, events: list[FaceEvent]) -> None:
        """Append events to events.jsonl (created on the first event)."""
        if not events:
            return
        with open(self.folder / "events.jsonl", "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(event.to_json(), separators=(",", ":")) + "\n" for event in events)

    def close(self) -> None:
        """Close both files."""
        self._jsonl.close()
        self._csv_file.close()
