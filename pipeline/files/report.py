"""Interview report of a finished run: per person, emotions over time and a summary.

Reads a run folder (timeline.jsonl, events.jsonl, summary.json) and writes, per tracked
person, `person_<id>.png` (class probabilities over time, the per-frame emotion as a
colour strip, emotion changes and micro-expressions marked), `report.md` / `report.json`
(share of time per emotion, changes, micro-expressions), `overview.png` when the source video
is at hand (frames with every face boxed over each person's strip), and optionally `annotated.mp4`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core.errors import SinkError, SourceError, shown
from pipeline.faces.colours import FER_COLOURS, bgr, class_colours
from pipeline.files.report_overview import draw_face, write_overview
from pipeline.files.sources import VideoFileSource
from pipeline.sinks.timeline_table import TimelineError, file_frames

log = logging.getLogger(__name__)


@dataclass
class PersonSummary:
    """What one tracked person showed."""

    track_id: int
    first_pts: float
    last_pts: float
    frames: int
    emotion_share: dict[str, float]
    changes: list[dict] = field(default_factory=list)
    micro_expressions: list[dict] = field(default_factory=list)


def write_report(run_dir: str | Path, annotate: bool = False, video: str | Path | None = None) -> list[Path]:
    """Write the report files into `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    timeline_path = run_dir / "timeline.jsonl"
    if not timeline_path.is_file():
        raise SourceError(f"no timeline.jsonl in {run_dir}: is it a folder written by process?")
    frames, events = _timeline_and_events(run_dir)
    if video is not None:
        VideoFileSource(video).close()  # a wrong --video is refused before anything is rewritten
    try:
        return _write_report(run_dir, frames, events, annotate, video)
    except OSError as exc:  # a full or read-only folder: an output problem, named as one
        raise SinkError(f"cannot write the report into {run_dir}: {exc.strerror or exc}") from None


def _timeline_and_events(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """The frame records of timeline.jsonl and the event records of events.jsonl; SourceError naming the first
    line that is not one, but for a last line cut short (a full disk, a killed run), left out with a warning."""
    problems: list[str] = []
    try:
        frames = [entry.to_json() for entry in file_frames(run_dir / "timeline.jsonl", None, problems)]
    except TimelineError as exc:
        raise SourceError(str(exc)) from None
    events_path = run_dir / "events.jsonl"
    events = []
    lines = events_path.read_text(encoding="utf-8", errors="replace").split("\n") if events_path.exists() else []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise ValueError
        except ValueError:
            if number == len(lines):
                problems.append(f"{events_path} line {number} is cut short (an interrupted write?), left out")
                break
            raise SourceError(f"{events_path} line {number} is not an event record: {line[:40]!r}") from None
        events.append(event)
    for problem in problems:
        log.warning("%s", problem)
    return frames, events


def _write_report(run_dir: Path, frames: list[dict], events: list[dict], annotate: bool,
                  video: str | Path | None) -> list[Path]:
    for stale in [*run_dir.glob("person_*.png"), run_dir / "overview.png"]:  # an earlier report's people
        stale.unlink(missing_ok=True)
    names = _class_names(frames)
    people = _people(frames, events)
    colours = _colours(frames, events)
    written = [_plot_person(run_dir, person, series, names, colours) for person, series in people]
    summaries = [person for person, _series in people]
    (run_dir / "report.json").write_text(json.dumps([vars(p) for p in summaries], indent=2))
    (run_dir / "report.md").write_text(_markdown(summaries, names, written))
    written += [run_dir / "report.json", run_dir / "report.md"]
    source = Path(video) if video else _recorded_video(run_dir)
    if source is not None:
        strips = [(person.track_id, series["pts"], series["top"]) for person, series in people]
        written.append(write_overview(run_dir, frames, strips, colours, source, _overview_title(run_dir, people)))
    if annotate:
        if source is None:
            raise SourceError(f"{run_dir}: the source video is unknown or gone; pass --video")
        written.append(write_annotated_video(source, frames, run_dir / "annotated.mp4"))
    return written


def write_annotated_video(video: Path, frames: list[dict], target: Path) -> Path:
    """Re-encode `video` with each face's box, id, emotion and score drawn (H.264, PyAV).

    The output has the size of the first frame as shown (rotation applied), padded to even sides of
    at least 2 pixels as yuv420p needs (a 1x1 or 33x17 video is padded, not cropped away).
    """
    import av

    source = VideoFileSource(video)
    by_index = {frame["frame"]: frame["faces"] for frame in frames}
    colours = _colours(frames, [])
    with av.open(str(target), mode="w") as container:
        stream = None
        for frame in source:
            if stream is None:
                height, width = (_even_side(side) for side in frame.image.shape[:2])
                stream = container.add_stream("libx264", rate=round(source.info.fps or 25), options={"crf": "20"})
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            image = _fit(frame.image, height, width)
            for face in by_index.get(frame.index, []):
                draw_face(image, face, bgr(colours[face["emotion"]]))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode() if stream is not None else []:
            container.mux(packet)
    return target


def _even_side(pixels: int) -> int:
    """The smallest even size of at least 2 that holds `pixels`."""
    return max(2, pixels + pixels % 2)


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` cropped or padded (black, bottom and right) to `height` x `width`, contiguous."""
    fitted = np.zeros((height, width, 3), np.uint8)
    kept = image[:height, :width]
    fitted[: kept.shape[0], : kept.shape[1]] = kept
    return fitted


def _people(frames: list[dict], events: list[dict]) -> list[tuple[PersonSummary, dict]]:
    series: dict[int, dict[str, list]] = defaultdict(lambda: {"pts": [], "scores": [], "top": []})
    for frame in frames:
        for face in frame["faces"]:
            if face["id"] is None:
                continue
            if not isinstance(face["id"], int) or isinstance(face["id"], bool):  # it names person_<id>.png
                raise SourceError(f"timeline.jsonl: face id {shown(face['id'])} of frame {frame['frame']} "
                                  "is not a track number")
            entry = series[face["id"]]
            entry["pts"].append(frame["pts"])
            entry["scores"].append(face["scores"])
            entry["top"].append(face["emotion"])
    people = []
    for track_id, data in sorted(series.items()):
        counts = Counter(data["top"])
        person = PersonSummary(
            track_id, data["pts"][0], data["pts"][-1], len(data["pts"]),
            {name: round(count / len(data["top"]), 4) for name, count in counts.most_common()},
            [e for e in events if e["type"] == "emotion_change" and e.get("id") == track_id],
            [e for e in events if e["type"] == "micro_expression" and e.get("id") == track_id],
        )
        people.append((person, data))
    return people


def _plot_person(run_dir: Path, person: PersonSummary, data: dict, names: list[str], colours: dict[str, str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = np.asarray(data["pts"])
    fig, (strip, ax) = plt.subplots(2, 1, figsize=(12, 4.8), sharex=True,
                                    gridspec_kw={"height_ratios": [1, 6], "hspace": 0.05})
    for name in names:
        values = np.asarray([scores.get(name, 0.0) for scores in data["scores"]])
        kernel = min(3, len(values))
        smooth = np.convolve(values, np.ones(kernel) / kernel, mode="same") if kernel > 1 else values
        ax.plot(pts, smooth, color=colours[name], lw=1.8, label=name)
    step = np.median(np.diff(pts)) if len(pts) > 1 else 0.04
    for t, top in zip(pts, data["top"]):
        strip.axvspan(t, t + step, color=colours[top], lw=0)
    for micro in person.micro_expressions:
        ax.axvspan(micro["onset"], micro["offset"] + step, color=colours[micro["emotion"]], alpha=0.25)
        ax.annotate(f"micro: {micro['emotion']}\n{micro['duration_ms']} ms", (micro["apex"], 1.0),
                    xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    for change in person.changes:
        ax.axvline(change["onset"], color="black", ls="--", lw=0.8)
        ax.annotate(f"→ {change['to']}", (change["onset"], 0.02), xytext=(3, 0), textcoords="offset points",
                    fontsize=8, rotation=90, va="bottom")
    strip.set_yticks([])
    strip.set_ylabel("emotion", rotation=0, ha="right", va="center", fontsize=8)
    strip.set_title(f"Person {person.track_id}: emotion probabilities over time "
                    f"({len(person.changes)} changes, {len(person.micro_expressions)} micro-expressions)")
    ax.set_ylim(0, 1.15)
    ax.set_xlim(pts[0], pts[-1] + step)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("class score (3-frame mean)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    path = run_dir / f"person_{person.track_id}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _markdown(people: list[PersonSummary], names: list[str], plots: list[Path]) -> str:
    lines = ["# Interview report", ""]
    if not people:
        lines += ["No tracked person in this run.", ""]
    lines += ["| person | seen | " + " | ".join(names) + " | changes | micro-expressions |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " | --- | --- |"]
    for p in people:
        shares = " | ".join(f"{p.emotion_share.get(name, 0) * 100:.0f}%" for name in names)
        lines.append(f"| {p.track_id} | {p.first_pts:.1f}-{p.last_pts:.1f} s | {shares} | {len(p.changes)} | "
                     f"{len(p.micro_expressions)} |")
    for p, plot in zip(people, plots):
        lines += ["", f"## Person {p.track_id}", "", f"![person {p.track_id}]({plot.name})", ""]
        lines += [f"- {c['onset']:.2f} s: {c['from']} → {c['to']}" for c in p.changes]
        lines += [f"- micro-expression {m['emotion']} at {m['apex']:.2f} s, {m['duration_ms']} ms, peak "
                  f"{m['peak']:.2f} (baseline {m['baseline']})" for m in p.micro_expressions]
    return "\n".join(lines) + "\n"


def _class_names(frames: list[dict]) -> list[str]:
    for frame in frames:
        for face in frame["faces"]:
            return list(face["scores"])
    return list(FER_COLOURS)


def _colours(frames: list[dict], events: list[dict]) -> dict[str, str]:
    """Colours of the model's classes, in its order, then of any other emotion a face or an event shows."""
    seen = [face["emotion"] for frame in frames for face in frame["faces"]]
    seen += [event["emotion"] for event in events if "emotion" in event]
    return class_colours([*_class_names(frames), *seen])


def _recorded_video(run_dir: Path) -> Path | None:
    """The video the run recorded in summary.json, when it is still there."""
    summary = run_dir / "summary.json"
    video = json.loads(summary.read_text()).get("video") if summary.exists() else None
    return Path(video) if video and Path(video).is_file() else None


def _overview_title(run_dir: Path, people: list) -> str:
    summary = run_dir / "summary.json"
    model = json.loads(summary.read_text()).get("model") if summary.exists() else None
    return f"{run_dir.name}: {len(people)} tracked " + ("person" if len(people) == 1 else "people") + (
        f", model {model}" if model else "")
