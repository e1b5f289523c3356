"""`read_timeline`: a source's timeline as a pandas DataFrame, one row per face per frame.

From a `timeline.jsonl`, the run folder holding one, or the source's frames stream in Redis:
the same frame records (the contract's, see docs/contract.md) give the same table. Every
record is decoded by the contract's reader (`entries.parse_frame`), so a file and a stream
are checked alike; fields a record carries beyond the contract's are ignored.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from pipeline.core.contract import CONTRACT_VERSIONS, RedisKeys
from pipeline.core.errors import EmotionStreamError, SinkError
from pipeline.core.source_ids import check_source_id, is_valid_source_id
from pipeline.core.uris import mask_uri
from pipeline.sinks.entries import FrameEntry, MalformedEntry, parse_frame, text_of
from pipeline.sinks.redis_client import Client, open_client
from pipeline.sinks.stream_reading import Skipped, XReadCursor, redis_replies

TIMELINE = "timeline.jsonl"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LEADING = ["source", "frame", "pts", "track_id", "emotion", "score"]
BOX = ["x1", "y1", "x2", "y2"]
TIMEOUT_S = 5.0


class TimelineError(EmotionStreamError, ValueError):
    """What was given to `read_timeline` is not a timeline, or not one it can read; the message names it."""


def read_timeline(
    path_or_redis_url: str | Path,
    source_id: str | None = None,
    *,
    prefix: str = "emotion",
    contract: int = 1,
) -> pd.DataFrame:
    """One source's timeline as a DataFrame: one row per face per frame.

    Columns: `source`, `frame`, `pts` (seconds), `track_id` (nullable Int64: <NA> for a face no
    track holds), `emotion` (the leading class), `score` (its score), one `p_<class>` per class
    of the model with that class's score (e.g. `p_happy`), and the box `x1`, `y1`, `x2`, `y2` in source pixels.
    Rows come in frame order, faces in the order the record lists them.

    A frame without faces adds no row: the number of frames processed is in the run's
    report (`summary.json`), and `frame` numbers show which frames had faces.

    Args:
        path_or_redis_url: a `timeline.jsonl`; a source's run folder holding one (the report's
            `output_dir`); an output folder with `source_id` (`runs/process` and `"interview"`); or a
            Redis URL (`redis://host:6379/0`) with `source_id`, read from the source's frames stream.
        source_id: the source to read; needed for Redis. A file is checked to hold this source.
        prefix: Redis: the key prefix (`redis.prefix`).
        contract: Redis: the contract version of the keys (`redis.contract`, 1 or 2).

    Raises:
        FileNotFoundError: there is no such file or folder.
        TimelineError: the input is not a timeline (a line that is not a frame record, a folder
            without timeline.jsonl, a source that is not there); the message names the input.
        SinkError: Redis did not answer or refused the read.

    Entries of a Redis stream that do not follow the contract are left out with a warning
    naming each (other writers may share a stream); in a file, such a line is an error.
    """
    if source_id is not None and not is_valid_source_id(source_id):
        raise TimelineError(f"source_id {source_id!r} is not a source id ([A-Za-z0-9._-]{{1,64}})")
    if contract not in CONTRACT_VERSIONS:
        raise TimelineError(f"contract must be one of {', '.join(map(str, CONTRACT_VERSIONS))}, got {contract!r}")
    problems: list[str] = []
    text = str(path_or_redis_url)
    if not isinstance(path_or_redis_url, Path) and text.startswith(REDIS_SCHEMES):
        frames = _redis_frames(text, source_id, RedisKeys(prefix, contract), problems)
    else:
        frames = file_frames(_timeline_path(Path(path_or_redis_url), source_id), source_id, problems)
    table = timeline_frame(frames)
    for problem in problems:
        warnings.warn(problem, stacklevel=2)
    return table


def timeline_frame(frames: Iterable[FrameEntry]) -> pd.DataFrame:
    """The table of some decoded frame records (see `read_timeline`)."""
    columns: dict[str, list] = {name: [] for name in LEADING + BOX}
    scores: list[dict[str, float]] = []
    classes: dict[str, None] = {}
    for entry in frames:
        for face in entry.faces:
            for name, value in zip(LEADING, (entry.source, entry.frame, entry.pts, face["id"], face["emotion"],
                                             face["score"])):
                columns[name].append(value)
            for name, value in zip(BOX, face["box"]):
                columns[name].append(value)
            scores.append(face["scores"])
            classes.update(dict.fromkeys(face["scores"]))
    table = {
        "source": pd.Series(columns["source"], dtype=str),
        "frame": pd.Series(columns["frame"], dtype="int64"),
        "pts": pd.Series(columns["pts"], dtype="float64"),
        "track_id": pd.Series(columns["track_id"], dtype="Int64"),
        "emotion": pd.Series(columns["emotion"], dtype=str),
        "score": pd.Series(columns["score"], dtype="float64"),
    }
    for name in classes:
        table[f"p_{name}"] = pd.Series([face.get(name) for face in scores], dtype="float64")
    for name in BOX:
        table[name] = pd.Series(columns[name], dtype="float64")
    return pd.DataFrame(table)


def _timeline_path(path: Path, source_id: str | None) -> Path:
    """The timeline.jsonl that `path` (and `source_id`) name."""
    if not path.exists():
        raise FileNotFoundError(f"no timeline at {path}: give a {TIMELINE}, the run folder holding one, "
                                "or a redis:// URL with source_id")
    if not path.is_dir():
        return path
    if (path / TIMELINE).is_file():
        return path / TIMELINE
    if source_id is not None and (path / check_source_id(source_id) / TIMELINE).is_file():
        return path / source_id / TIMELINE
    found = sorted(child.name for child in path.iterdir() if (child / TIMELINE).is_file())
    if source_id is not None:
        raise TimelineError(f"{path} holds no {TIMELINE} of source {source_id!r}"
                            + (f" (sources there: {', '.join(found)})" if found else ""))
    hint = (f"; it holds the run folders of {', '.join(found)}: pass one of them, or source_id" if found
            else "; give the run folder of one source (the report's output_dir)")
    raise TimelineError(f"{path} is a folder without {TIMELINE}{hint}")


def file_frames(path: Path, source_id: str | None, problems: list[str]) -> Iterator[FrameEntry]:
    """The frame records of a timeline.jsonl, decoded as Redis entries are; TimelineError at the first line
    that is not one (the last line of an interrupted write, without its newline, is left out: `problems`)."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:
        raise TimelineError(f"{path} is not a {TIMELINE} (not UTF-8 text)") from None
    except OSError as exc:
        raise TimelineError(f"cannot read {path}: {exc.strerror}") from None
    cut_short = len(lines) - 1  # the line after the last newline: whole only when empty
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = _file_record(line)
        except MalformedEntry as exc:
            if number - 1 == cut_short:
                problems.append(f"{path} line {number} is cut short (an interrupted write?), left out: {exc}")
                return
            raise TimelineError(f"{path} line {number} is not a frame record: {exc}") from None
        if source_id is not None and entry.source != source_id:
            raise TimelineError(f"{path} holds source {entry.source!r}, not {source_id!r}")
        yield entry


def _file_record(line: str) -> FrameEntry:
    """One timeline.jsonl line decoded by the frames-stream reader: each field flattened as a stream entry holds it
    (text as it is, the rest as JSON); lines written before records carried `v` are contract-1 records."""
    try:
        record = json.loads(line)
    except ValueError:
        raise MalformedEntry(f"not valid JSON: {line[:40]!r}") from None
    if not isinstance(record, dict):
        raise MalformedEntry(f"not a JSON object: {line[:40]!r}")
    source = record.get("source")
    if not isinstance(source, str) or not is_valid_source_id(source):
        raise MalformedEntry(f"source is not a source id: {source!r}" if "source" in record else "no 'source' field")
    fields = {name: value if isinstance(value, str) else json.dumps(value) for name, value in record.items()}
    fields.setdefault("v", "1")
    return parse_frame("", fields, RedisKeys().frames(source))


def _redis_frames(url: str, source_id: str | None, keys: RedisKeys, problems: list[str]) -> list[FrameEntry]:
    """The entries of the source's frames stream there when the read begins, in order; malformed ones are left
    out, each named in `problems`."""
    shown_url = mask_uri(url)
    if source_id is None:
        raise TimelineError(f"reading a timeline from Redis ({shown_url}) needs source_id")
    stream = keys.frames(source_id)
    client = open_client(url, TIMEOUT_S, cluster=False)
    try:
        with redis_replies(f"reading {stream} at {shown_url}"):
            newest = client.xrevrange(stream, count=1)
            if not newest:
                raise TimelineError(f"{shown_url} holds no frames of source {source_id!r}: {stream} is empty or "
                                    f"missing{_where_else(client, keys, source_id)}")
        return _read_until(client, stream, _entry_order(text_of(newest[0][0])), shown_url, problems)
    finally:
        client.close()


def _where_else(client: Client, keys: RedisKeys, source_id: str) -> str:
    """Where the frames of `source_id` are when not under `keys`: under the other contract, or which sources the
    prefix holds."""
    other = RedisKeys(keys.prefix, 2 if keys.version == 1 else 1)
    if client.exists(other.frames(source_id)):
        return f" ({other.frames(source_id)} holds them: pass contract={other.version})"
    sources = sorted(text_of(name) for name in client.hkeys(keys.sources))
    return (f" (sources there under prefix {keys.prefix!r}: {', '.join(sources)})" if sources
            else f" (nothing there under prefix {keys.prefix!r}: pass the prefix= the run wrote with)")


def _read_until(client: Client, stream: str, last: tuple[int, int], shown_url: str,
                problems: list[str]) -> list[FrameEntry]:
    """The entries of `stream` up to the one at `last` (what was written after the read began is not read)."""
    skipped: list[Skipped] = []
    cursor: XReadCursor[FrameEntry] = XReadCursor(client, _frame, skipped.append, from_start=True)
    frames: list[FrameEntry] = []
    for _ in cursor.join(stream, at_start=True):
        pass
    try:
        while True:
            replies = cursor.read(None)
            if not replies:
                return frames
            for name, entries in replies:
                for raw_id, fields in entries:
                    entry_id = text_of(raw_id)
                    frames += cursor.deliver(text_of(name), entry_id, fields)
                    if _entry_order(entry_id) >= last:
                        return frames
    except SinkError as exc:
        raise SinkError(f"{exc} ({shown_url})") from None
    finally:
        problems += [f"{shown_url}: {skip.describe()}" for skip in skipped]


def _frame(stream: str, entry_id: str, fields: dict) -> FrameEntry:
    return parse_frame(entry_id, fields, stream)


def _entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id `<ms>-<seq>` as numbers, to compare."""
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)
