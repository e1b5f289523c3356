"""The `demo` command: the whole chain on a scripted video, then on a real face."""

from __future__ import annotations

import argparse
import os

from pipeline.cli.common import command


def add_demo(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "demo", _run_demo,
                     "end-to-end demo: a scripted video scored against its script, then a real face (no inputs needed)")
    parser.add_argument("--redis", help="Redis URL (default: $REDIS_URL, else a private redis-server)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--retrain", action="store_true",
                        help="train the tiny demo model from scratch and check it matches the shipped one")
    parser.add_argument("--weights", help="your emotion model for the real-face step (default: the demo model)")
    parser.add_argument("--imgsz", type=int, help="image size for --weights (default: the size the weights state, as for process)")


def _run_demo(args: argparse.Namespace) -> int:
    from pipeline.cli.demo_steps import run_demo

    result = run_demo(args.out, redis_url=args.redis or os.environ.get("REDIS_URL"), retrain=args.retrain,
                      weights=args.weights, imgsz=args.imgsz)
    return 0 if result.passed else 1
