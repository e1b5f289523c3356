"""The `process` command: a video file into a Redis and file timeline."""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_REDIS_PROBLEM,
    EXIT_SOURCE_PROBLEM,
    command,
    model_flags,
    model_overrides,
)
from pipeline.config import load_config
from pipeline.contract import RedisKeys


def add_process(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "process", _run_process, "process a video file into a Redis and file timeline")
    parser.add_argument("video", help="video file (any container and codec FFmpeg reads)")
    model_flags(parser)
    parser.add_argument("--redis", help="Redis URL (default: $REDIS_URL; none: files only)")
    parser.add_argument("--source-id", help="source id in Redis (default: the file name)")
    parser.add_argument("--out", help="output folder (default runs/process)")
    parser.add_argument("--stride", type=int, help="process every Nth frame (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--report", action="store_true", help="write the interview report (plots per person)")
    parser.add_argument("--annotate", action="store_true", help="with --report: also an annotated MP4")


def _run_process(args: argparse.Namespace) -> int:
    from pipeline.runner import process_video

    overrides = model_overrides(args) | {
        "redis.url": args.redis,
        "output.dir": args.out,
        "source.stride": args.stride,
    }
    config = load_config(args.config, overrides)
    report = process_video(config, args.video, args.source_id, show_progress=not args.quiet)
    print(f"{report.source_id}: {report.fps:.1f} frames/s on {report.backend} ({report.model_id})")
    print(report.summary.format())
    print(f"timeline: {report.output_dir}/timeline.jsonl, timeline.csv, events.jsonl")
    if args.report:
        from pipeline.report import write_report

        written = write_report(report.output_dir, annotate=args.annotate, video=args.video)
        print(f"report: {report.output_dir / 'report.md'} ({len(written)} files)")
    if config.redis.url and not report.redis_problem:
        keys = RedisKeys(config.redis.prefix)
        print(
            f"redis: {report.redis_written} entries in {keys.frames(report.source_id)}"
            + (f" ({report.redis_duplicates} already there, skipped)" if report.redis_duplicates else "")
        )
    if report.interrupted:
        print("emotion-stream: interrupted; results so far are saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    if report.source_problem:
        print(f"emotion-stream: warning: {args.video}: {report.source_problem}", file=sys.stderr)
    if report.redis_problem:
        print(f"emotion-stream: error: {report.redis_problem}", file=sys.stderr)
        return EXIT_REDIS_PROBLEM
    return EXIT_SOURCE_PROBLEM if report.source_problem else 0
