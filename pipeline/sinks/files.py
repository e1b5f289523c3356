"""File sink: the timeline as JSONL (one frame record a line) and CSV (one row per face per frame), the events as
JSONL (one event record a line): the records of the contract (pipeline/core/schemas/), as Redis holds them."""

from __future__ import annotations

import contextlib
import csv
import json
import time
from pathlib import Path
from typing import TextIO

from pipeline.core.contract import SCHEMA_VERSION
from pipeline.core.errors import SinkError
from pipeline.sinks.payload import EventRecord, FramePayload, frame_line


class FileSink:
    """Writes `timeline.jsonl` and `timeline.csv` under `folder`, flushed after every batch.

    The files are created on `open` (or the first write), so a job of many files holds open
    only those of the sources being processed. A run that is interrupted or fails later
    keeps every batch written so far.
    """

    def __init__(self, folder: str | Path, class_names: list[str], model_id: str, version: str = SCHEMA_VERSION) -> None:
        """`version`: the contract version the records carry (`redis.contract`'s, as in Redis)."""
        self.folder = Path(folder)
        self.class_names = class_names
        self.model_id = model_id
        self.version = version
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
        now = time.time()
        for payload in payloads:
            frame = payload.frame
            pts, ts = round(frame.pts, 3), int(frame.wall_time * 1000)
            self._jsonl.write(frame_line(payload, self.model_id, self.version, int((now - frame.wall_time) * 1000))
                              + "\n")
            for number, face in enumerate(payload.faces):
                self._csv.writerow(
                    [frame.source_id, frame.index, pts, ts, number, face["id"]]
                    + face["box"]
                    + [face["emotion"], face["score"]]
                    + [face["scores"][name] for name in self.class_names]
                )
        self._jsonl.flush()
        self._csv_file.flush()

    def write_events(self, events: list[EventRecord]) -> None:
        """Append face events to events.jsonl (created on the first event)."""
        if not events:
            return
        self.open()
        with open(self.folder / "events.jsonl", "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record.to_json(self.version), separators=(",", ":")) + "\n"
                              for record in events)

    def close(self) -> None:
        """Close both files (a later write reopens them to append)."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._csv_file.close()
            self._jsonl = None
