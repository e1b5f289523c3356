"""The `emotion-stream` command line: one entry point, one module per sub-command."""

from __future__ import annotations

import argparse
import signal
import sys

from pipeline import __version__
from pipeline.cli import bench, demo, export, process, report, serve, subscribe, training
from pipeline.cli.common import EXIT_INTERRUPTED
from pipeline.core.errors import EmotionStreamError
from pipeline.core.log_setup import configure_logging
from pipeline.core.uris import mask_uri

ERROR_LINE_LIMIT = 500
"""Characters of an error message printed; the rest is cut (a message is one short line)."""


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the sub-command, and turn user-facing errors into one line and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.handler(args) or 0)
    except EmotionStreamError as exc:
        print(f"emotion-stream: error: {_error_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("emotion-stream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="emotion-stream",
        description="Real-time facial-emotion analytics on video, streamed into Redis.",
    )
    parser.add_argument("--version", action="version", version=f"emotion-stream {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    process.add_process(commands)
    serve.add_serve(commands)
    subscribe.add_subscribe(commands)
    report.add_report(commands)
    export.add_export(commands)
    training.add_train(commands)
    training.add_evaluate(commands)
    demo.add_demo(commands)
    bench.add_bench(commands)
    return parser


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM stops a run the way Ctrl-C does: sinks are flushed, results so far kept."""
    raise KeyboardInterrupt


def _error_line(exc: EmotionStreamError) -> str:
    """The message of `exc` on one line, credentials masked, cut to `ERROR_LINE_LIMIT`."""
    text = " ".join(mask_uri(str(exc)).split())
    return text if len(text) <= ERROR_LINE_LIMIT else text[:ERROR_LINE_LIMIT] + "..."


if __name__ == "__main__":
    sys.exit(main())
