"""The `bench` command: throughput against YOLO.predict, runtimes, live capacity."""

from __future__ import annotations

import argparse

from pipeline.cli.common import command, model_flags, model_overrides
from pipeline.core.config import load_config
from pipeline.core.errors import ConfigError


def add_bench(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "bench", _run_bench, "pipeline throughput against YOLO.predict on one video")
    parser.add_argument("video", help="video file")
    model_flags(parser)
    parser.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    parser.add_argument(
        "--streams", help="live mode: N copies of VIDEO paced at its frame rate, as cameras (serve path); "
        "auto: find the most held with 0.5%% dropped or less"
    )
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="live mode: how long to run (each probe of --streams auto; default 30)")
    parser.add_argument("--redis", help="live mode: Redis URL (default: a private redis-server)")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="the Ray path's overhead against plain process (or serve, with --streams N) on this "
                             "cluster, e.g. local")
    parser.add_argument("--files", type=int, default=8, help="with --cluster: copies of VIDEO to process (default 8)")
    parser.add_argument("--backends", help="compare CPU runtimes for .pt weights, e.g. pytorch,onnx,openvino")


def _run_bench(args: argparse.Namespace) -> int:
    from pipeline.cli.benchmarks import find_stream_capacity, run_backend_bench, run_bench, run_live_bench

    config = load_config(args.config, model_overrides(args) | {"redis.url": args.redis})
    if args.cluster is not None:
        from pipeline.cli.fleet_bench import run_fleet_archive_bench, run_fleet_live_bench

        if args.files < 1:
            raise ConfigError(f"--files takes a number of copies of at least 1, got {args.files}")
        if args.streams:
            run_fleet_live_bench(config, args.video, _stream_count(args.streams), args.seconds, args.cluster)
        else:
            run_fleet_archive_bench(config, args.video, args.files, args.cluster)
    elif args.streams == "auto":
        find_stream_capacity(config, args.video, args.seconds)
    elif args.streams:
        run_live_bench(config, args.video, _stream_count(args.streams), args.seconds)
    elif args.backends:
        run_backend_bench(config, args.video, args.backends.split(","), max_frames=args.frames)
    else:
        run_bench(config, args.video, max_frames=args.frames)
    return 0


def _stream_count(streams: str) -> int:
    if not streams.isdigit() or int(streams) < 1:
        raise ConfigError(f"--streams takes a number of streams (or auto without --cluster), got {streams!r}")
    return int(streams)
