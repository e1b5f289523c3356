"""The `report` command: the interview report of a finished run."""

from __future__ import annotations

import argparse

from pipeline.cli.common import command


def add_report(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "report", _run_report, "interview report of a finished process run")
    parser.add_argument("out_dir", help="the run's folder (e.g. runs/process/interview-01)")
    parser.add_argument("--annotate", action="store_true", help="also write annotated.mp4")
    parser.add_argument("--video", help="source video for overview.png and --annotate (default: the one the run recorded)")


def _run_report(args: argparse.Namespace) -> int:
    from pipeline.files.report import write_report

    for path in write_report(args.out_dir, annotate=args.annotate, video=args.video):
        print(path)
    return 0
