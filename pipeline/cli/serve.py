"""The `serve` command: many live sources into Redis."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pipeline.cli.common import (
    EXIT_REDIS_PROBLEM,
    EXIT_SOURCE_PROBLEM,
    command,
    model_flags,
    model_overrides,
    redis_flags,
    redis_overrides,
)
from pipeline.core.config import load_config
from pipeline.core.errors import EmotionStreamError
from pipeline.core.uris import mask_uri

if TYPE_CHECKING:  # the command line imports no model runtime until a command runs
    from pipeline.live.serve import ServeReport


def add_serve(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "serve", _run_serve, "run many live sources (RTSP, HTTP, devices, files) into Redis")
    model_flags(parser)
    parser.add_argument("--redis", help="Redis URL (default: the config's redis.url, else $REDIS_URL)")
    redis_flags(parser)
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (metrics.port)")
    parser.add_argument("--metrics-host", help="address the metrics endpoint binds to (metrics.host, default 127.0.0.1; "
                        "0.0.0.0 for every interface)")
    parser.add_argument("--out", help="file outputs folder (output.dir)")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="serve on a Ray cluster's inference actors: ray://HOST:10001, auto (inside the "
                             "cluster) or local (Ray in this process); needs the cluster extra")


def _run_serve(args: argparse.Namespace) -> int:
    from pipeline.live.serve import serve

    if not args.config:
        raise EmotionStreamError("serve needs --config FILE with a 'sources:' list (see configs/cameras.yaml)")
    overrides = model_overrides(args) | redis_overrides(args) | {
        "redis.url": args.redis,
        "metrics.port": args.metrics_port,
        "metrics.host": args.metrics_host,
        "output.dir": args.out,
    }
    config = load_config(args.config, overrides)
    if args.cluster is not None:
        from pipeline.fleet.camera_fleet import serve_on_cluster

        fleet = serve_on_cluster(config, args.cluster)
        for move in fleet.moves:
            print(f"moved: {move.describe()}")
        return _print_report(fleet.serve)
    return _print_report(serve(config))


def _print_report(report: ServeReport) -> int:
    for source_id, state in report.states.items():
        failure = report.failures.get(source_id)
        print(
            f"{source_id}: {state}, {report.frames[source_id]} frames, {report.dropped[source_id]} dropped, "
            f"{report.reconnects[source_id]} reconnects" + (f" ({mask_uri(failure)})" if failure else "")
        )
        if report.redis_duplicates[source_id]:
            print(f"emotion-stream: warning: {source_id}: Redis already held entries with the ids of "
                  f"{report.redis_duplicates[source_id]} of its frames (an earlier run under this id, or a replay "
                  f"after an outage) and kept those; {report.redis_written[source_id]} frame entries were written",
                  file=sys.stderr)
    if report.stages:
        print(f"engine stages busy: {report.stages}")
    if report.redis_unwritten or report.redis_rejected:
        print(f"emotion-stream: error: Redis did not take {report.redis_unwritten + report.redis_rejected} commands "
              f"({report.redis_unwritten} kept for the next run, {report.redis_rejected} rejected; see the log)",
              file=sys.stderr)
        return EXIT_REDIS_PROBLEM
    if report.all_failed:
        print("emotion-stream: error: every source failed", file=sys.stderr)
        return EXIT_SOURCE_PROBLEM
    return 0
