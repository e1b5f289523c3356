"""The `process` command: video files (or folders of them) into Redis and file timelines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_REDIS_PROBLEM,
    EXIT_SOURCE_PROBLEM,
    command,
    model_flags,
    model_overrides,
    redis_flags,
    redis_overrides,
)
from pipeline.core.config import PipelineConfig, load_config
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import ConfigError, SourceError
from pipeline.core.source_ids import check_source_id
from pipeline.core.uris import mask_uri, video_path

if TYPE_CHECKING:  # the command line imports no model runtime until a command runs (decoder processes import it)
    from pipeline.files.process import RunReport

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".flv", ".wmv", ".mpg", ".mpeg"}


def add_process(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "process", _run_process, "process video files into Redis and file timelines")
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="video files (any container and codec FFmpeg reads) or folders of them")
    model_flags(parser)
    parser.add_argument("--redis", help="Redis URL (default: $REDIS_URL; none: files only)")
    redis_flags(parser)
    parser.add_argument("--source-id", help="source id in Redis for a single file (default: the file name)")
    parser.add_argument("--out", help="output folder (default runs/process)")
    parser.add_argument("--stride", type=int, help="process every Nth frame (default 1)")
    parser.add_argument("--decode-processes", type=int,
                        help="processes decoding one long file in keyframe segments (default: as the cores allow)")
    parser.add_argument("--replace", action="store_true",
                        help="delete what Redis holds for these source ids (frames, events, status) first; "
                             "without it, results of another file or settings under a source id refuse the run")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run on a Ray cluster: ray://HOST:10001, auto (inside the cluster) or local (Ray in "
                             "this process); needs the cluster extra")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--report", action="store_true", help="write the interview report (plots per person)")
    parser.add_argument("--annotate", action="store_true", help="with --report: also an annotated MP4")


def _run_process(args: argparse.Namespace) -> int:
    from pipeline.files.process import process_files, process_video

    overrides = model_overrides(args) | redis_overrides(args) | {
        "redis.url": args.redis,
        "output.dir": args.out,
        "source.stride": args.stride,
        "source.decode_processes": args.decode_processes,
    }
    if args.source_id is not None:
        check_source_id(args.source_id, "--source-id")
    config = load_config(args.config, overrides)
    videos = _expand(args.videos)
    if args.source_id is not None and len(videos) > 1:
        raise ConfigError("--source-id names a single file; several files take their file names")
    if args.cluster is not None:
        from pipeline.fleet.archive import process_on_cluster

        if args.source_id is not None:
            raise ConfigError("--source-id is for one file on this machine; --cluster jobs take the file names")
        reports = process_on_cluster(config, videos, args.cluster, replace=args.replace, show_progress=not args.quiet)
    elif len(videos) == 1:
        reports = [process_video(config, videos[0], args.source_id, show_progress=not args.quiet,
                                 replace=args.replace)]
    else:
        reports = process_files(config, videos, show_progress=not args.quiet, replace=args.replace)
    codes = [_print_report(report, config, args) for report in reports]
    if len(reports) > 1:
        print(_closing_line(reports))
    return max(codes, key=_severity)


def _closing_line(reports: list[RunReport]) -> str:
    """`N files: C complete, P with problems (ids), I interrupted (ids)`."""
    problems = [report.source_id for report in reports if report.source_problem or report.redis_problem]
    interrupted = [report.source_id for report in reports
                   if report.interrupted and report.source_id not in problems]
    complete = len(reports) - len(problems) - len(interrupted)
    return (f"{len(reports)} files: {complete} complete"
            + (f", {len(problems)} with problems ({', '.join(problems)})" if problems else "")
            + (f", {len(interrupted)} interrupted ({', '.join(interrupted)})" if interrupted else ""))


def _expand(paths: list[str]) -> list[Path]:
    """Files as given; folders become their video files, sorted (not recursive). A file given
    twice (or as itself and within its folder) is processed once, with a warning."""
    videos: list[Path] = []
    for path in map(video_path, paths):
        if path.is_dir():
            found = sorted(child for child in path.iterdir() if child.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise SourceError(f"no video files in folder {path} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
            videos += found
        else:
            videos.append(path)
    unique: dict[Path, Path] = {}
    for video in videos:
        if video.resolve() in unique:
            print(f"emotion-stream: warning: {video} is given more than once; it is processed once", file=sys.stderr)
        unique.setdefault(video.resolve(), video)
    return list(unique.values())


def _severity(code: int) -> int:
    """Exit codes by how much they matter: interrupted, Redis problem, source problem, success."""
    return {EXIT_INTERRUPTED: 3, EXIT_REDIS_PROBLEM: 2, EXIT_SOURCE_PROBLEM: 1}.get(code, 0)


def _redis_line(report: RunReport, frames_key: str) -> str:
    if report.redis_resumed == "ended" and not report.redis_written:
        return f"redis: {frames_key} holds this run already (same file, model and settings): nothing added"
    resumed = f"resumed the {report.redis_resumed or 'earlier'} run of the same file and settings: " \
        if report.redis_resumed is not None else ""
    skipped = f" ({report.redis_duplicates} already there, skipped)" if report.redis_duplicates else ""
    return f"redis: {resumed}{report.redis_written} entries in {frames_key}{skipped}"


def _print_report(report: RunReport, config: PipelineConfig, args: argparse.Namespace) -> int:
    if report.opened:
        print(f"{report.source_id}: {report.fps:.1f} frames/s on {report.backend} ({report.model_id})")
        print(report.summary.format())
        print(f"timeline: {report.output_dir}/timeline.jsonl, timeline.csv, events.jsonl")
    if args.report and report.summary.frames:
        from pipeline.files.report import write_report

        written = write_report(report.output_dir, annotate=args.annotate, video=report.video)
        print(f"report: {report.output_dir / 'report.md'} ({len(written)} files)")
    if config.redis.url and not report.redis_problem and report.opened:
        print(_redis_line(report, RedisKeys.of(config.redis).frames(report.source_id)))
    if report.interrupted:
        print("emotion-stream: interrupted; results so far are saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    if report.source_problem:
        print(f"emotion-stream: warning: {report.video}: {mask_uri(report.source_problem)}", file=sys.stderr)
    if report.redis_problem:
        print(f"emotion-stream: error: {mask_uri(report.redis_problem)}", file=sys.stderr)
        return EXIT_REDIS_PROBLEM
    return EXIT_SOURCE_PROBLEM if report.source_problem else 0
