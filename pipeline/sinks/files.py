"""File sink: the timeline as JSONL (one line per frame) and CSV (one row per face per frame)."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import TextIO

from pipeline.core.errors import SinkError
from pipeline.faces.events import FaceEvent
from pipeline.sinks.payload import FramePayload


class FileSink:
    """Writes `timeline.jsonl` and `timeline.csv` under `folder`, flushed after every batch.

    The files are created on `open` (or the first write), so a job of many files holds open
    only those of the sources being processed. A run that is interrupted or fails later
    keeps every batch written so far.
    """

    def __init__(self, folder: str | Path, class_names: list[str], model_id: str) -> None:
        self.folder = Path(folder)
        self.class_names = class_names
        self.model_id = model_id
        self._jsonl: TextIO | None = None
        self._created = False

    def open(self) -> None:
        """Create the timeline files (replacing an earlier run's), or reopen them after `close` to append."""
        if self._jsonl is not None:
            return
        mode = "a" if self._created else "w"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with contextlib.ExitStack() as opened:
                jsonl = opened.enter_context(open(self.folder / "timeline.jsonl", mode, encoding="utf-8"))
                csv_file = opened.enter_context(open(self.folder / "timeline.csv", mode, encoding="utf-8", newline=""))
                opened.pop_all()  # both opened: keep them
        except OSError as exc:
            raise SinkError(f"cannot write outputs to {self.folder}: {exc.strerror}") from None
        self._jsonl, self._csv_file = jsonl, csv_file
        self._csv = csv.writer(self._csv_file)
        if self._created:
            return
        self._created = True
        (self.folder / "events.jsonl").unlink(missing_ok=True)
        self._csv.writerow(
            ["source", "frame", "pts", "ts", "face", "id", "x1", "y1", "x2", "y2", "emotion", "score"]
            + [f"p_{name}" for name in self.class_names]
        )

    @property
    def jsonl_path(self) -> Path:
        """Path of the per-frame JSONL timeline."""
        return self.folder / "timeline.jsonl"

    @property
    def csv_path(self) -> Path:
        """Path of the per-face CSV timeline."""
        return self.folder / "timeline.csv"

    def write(self, payloads: list[FramePayload]) -> None:
        """Append one batch of a source's frames to both files and flush them."""
        if not payloads:
            return
        self.open()
        model = json.dumps(self.model_id)
        for payload in payloads:
            frame = payload.frame
            pts, ts = round(frame.pts, 3), int(frame.wall_time * 1000)
            self._jsonl.write(f'{{"source":{json.dumps(frame.source_id)},"frame":{frame.index},"pts":{pts},'
                              f'"ts":{ts},"faces":{payload.faces_json},"model":{model}}}\n')
            for number, face in enumerate(payload.faces):
                self._csv.writerow(
                    [frame.source_id, frame.index, pts, ts, number, face["id"]]
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
        self.open()
        with open(self.folder / "events.jsonl", "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(event.to_json(), separators=(",", ":")) + "\n" for event in events)

    def close(self) -> None:
        """Close both files (a later write reopens them to append)."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._csv_file.close()
            self._jsonl = None
