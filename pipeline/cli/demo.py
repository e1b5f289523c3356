"""The `demo` command: the whole chain on synthetic data."""

from __future__ import annotations

import argparse
import os

from pipeline.cli.common import command


def add_demo(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "demo", _run_demo, "end-to-end demo on synthetic data (no inputs needed)")
    parser.add_argument("--redis", help="Redis URL (default: $REDIS_URL, else a private redis-server)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the tiny model")


def _run_demo(args: argparse.Namespace) -> int:
    from pipeline.cli.demo_steps import run_demo

    agreement = run_demo(args.out, redis_url=args.redis or os.environ.get("REDIS_URL"), epochs=args.epochs)
    return 0 if agreement.passed else 1
