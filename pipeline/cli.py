"""The `emotion-stream` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from pipeline import __version__
from pipeline.config import load_config
from pipeline.contract import RedisKeys
from pipeline.errors import EmotionStreamError

EXIT_SOURCE_PROBLEM = 3
EXIT_REDIS_PROBLEM = 5
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the sub-command, and turn user-facing errors into one line and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.handler(args) or 0)
    except EmotionStreamError as exc:
        print(f"emotion-stream: error: {exc}", file=sys.stderr)
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
    _add_process(commands)
    _add_serve(commands)
    _add_subscribe(commands)
    _add_report(commands)
    _add_export(commands)
    _add_train(commands)
    _add_evaluate(commands)
    _add_demo(commands)
    _add_bench(commands)
    return parser


def _model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="model: .pt, .onnx, OpenVINO folder or .engine")
    parser.add_argument("--config", help="pipeline YAML (default: configs/pipeline.yaml)")
    parser.add_argument("--imgsz", type=int, help="inference size in pixels (default 640)")
    parser.add_argument("--batch", type=int, help="frames per forward pass (default 8)")
    parser.add_argument("--device", help="cpu or cuda:N (default cpu)")
    parser.add_argument("--conf", type=float, help="minimum face score (default 0.25)")
    parser.add_argument(
        "--cpu-backend",
        choices=("openvino", "onnx", "pytorch"),
        help="runtime for .pt weights on the CPU (default openvino, exported once and cached)",
    )


def _model_overrides(args: argparse.Namespace) -> dict:
    return {
        "model.weights": args.weights,
        "model.imgsz": args.imgsz,
        "model.device": args.device,
        "model.conf": args.conf,
        "model.cpu_backend": args.cpu_backend,
        "batching.batch": args.batch,
    }


def _add_process(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "process", _run_process, "process a video file into a Redis and file timeline")
    parser.add_argument("video", help="video file (any container and codec FFmpeg reads)")
    _model_flags(parser)
    parser.add_argument("--redis", help="Redis URL (default: $REDIS_URL; none: files only)")
    parser.add_argument("--source-id", help="source id in Redis (default: the file name)")
    parser.add_argument("--out", help="output folder (default runs/process)")
    parser.add_argument("--stride", type=int, help="process every Nth frame (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--report", action="store_true", help="write the interview report (plots per person)")
    parser.add_argument("--annotate", action="store_true", help="with --report: also an annotated MP4")


def _run_process(args: argparse.Namespace) -> int:
    from pipeline.runner import process_video

    overrides = _model_overrides(args) | {
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


def _add_serve(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "serve", _run_serve, "run many live sources (RTSP, HTTP, devices, files) into Redis")
    _model_flags(parser)
    parser.add_argument("--redis", help="Redis URL (default: the config's redis.url, else $REDIS_URL)")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument("--out", help="file outputs folder (output.dir)")


def _run_serve(args: argparse.Namespace) -> int:
    from pipeline.serve import serve

    if not args.config:
        raise EmotionStreamError("serve needs --config FILE with a 'sources:' list (see configs/cameras.yaml)")
    overrides = _model_overrides(args) | {
        "redis.url": args.redis,
        "metrics.port": args.metrics_port,
        "output.dir": args.out,
    }
    report = serve(load_config(args.config, overrides))
    for source_id, state in report.states.items():
        print(
            f"{source_id}: {state}, {report.frames[source_id]} frames, {report.dropped[source_id]} dropped, "
            f"{report.reconnects[source_id]} reconnects"
        )
    if report.redis_unwritten:
        print(f"emotion-stream: error: {report.redis_unwritten} Redis commands could not be written", file=sys.stderr)
        return EXIT_REDIS_PROBLEM
    return 0


def _add_subscribe(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "subscribe", _run_subscribe, "follow a source's frames or events live")
    parser.add_argument("source", nargs="?", help="source id (or --source)")
    parser.add_argument("--source", dest="source_flag", help="source id")
    parser.add_argument("--all", action="store_true", help="events of every source")
    parser.add_argument("--events", action="store_true", help="events instead of frames")
    parser.add_argument("--type", action="append", help="only events of this type (repeatable)")
    parser.add_argument("--group", help="consumer group: at-least-once delivery with acknowledgements")
    parser.add_argument("--consumer", default=socket.gethostname(), help="consumer name in --group (default: host)")
    parser.add_argument("--claim-idle", type=float, default=30.0,
                        help="--group: take over events another consumer left unacknowledged this long (s)")
    parser.add_argument("--redis", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--prefix", default="emotion", help="key prefix (default emotion)")
    parser.add_argument("--from-start", action="store_true", help="replay the stream from its first entry")
    parser.add_argument("--json", action="store_true", help="print each entry as one JSON object")
    parser.add_argument("--until-ended", action="store_true", help="exit once the source(s) ended and all is read")


def _run_subscribe(args: argparse.Namespace) -> int:
    from pipeline.sinks.redis_sink import connect
    from pipeline.subscriber import follow_frames

    url = args.redis or os.environ.get("REDIS_URL")
    if not url:
        raise EmotionStreamError("no Redis given: pass --redis URL or set REDIS_URL")
    source = args.source_flag or args.source
    if not source and not (args.events and args.all):
        raise EmotionStreamError("name a source (SOURCE or --source S), or use --events --all")
    client = connect(url)
    keys = RedisKeys(args.prefix)
    if args.events:
        return _print_events(client, keys, None if args.all else source, args)
    for entry in follow_frames(client, keys, source, args.from_start, args.until_ended):
        print(json.dumps(entry.to_json()) if args.json else entry.format(), flush=True)
    return 0


def _print_events(client, keys: RedisKeys, source: str | None, args: argparse.Namespace) -> int:
    from pipeline.subscriber import consume_events, follow_events_pubsub, replay_events

    if args.group:
        events = consume_events(client, keys, source, args.group, args.consumer, int(args.claim_idle * 1000),
                                args.until_ended)
    elif args.from_start:
        events = replay_events(client, keys, source, args.until_ended)
    else:
        events = (e for e in follow_events_pubsub(client, keys) if source is None or e.get("source") == source)
    for event in events:
        if args.type and event.get("type") not in args.type:
            continue
        print(json.dumps(event) if args.json else _event_line(event), flush=True)
    return 0


def _event_line(event: dict) -> str:
    details = " ".join(f"{key}={value}" for key, value in event.items() if key not in ("v", "type", "source", "ts", "pts"))
    return f"{event.get('source', '?'):<12} {float(event.get('pts') or 0):9.3f}s  {event['type']:<16} {details}"


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "export", _run_export, "export weights: TensorRT engine, ONNX, OpenVINO, Triton")
    parser.add_argument("weights", help="trained .pt weights")
    parser.add_argument("--format", required=True, choices=("engine", "onnx", "openvino", "triton"))
    parser.add_argument("--half", action="store_true", help="FP16 (engine, ONNX on GPU) or bf16/FP16 (OpenVINO)")
    parser.add_argument("--int8", action="store_true", help="INT8 quantisation, calibrated with --calib")
    parser.add_argument("--calib", help="data.yaml (or FER2013 data) whose training images calibrate INT8")
    parser.add_argument("--batch", type=int, default=8, help="maximum batch (default 8)")
    parser.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=True,
                        help="dynamic batch (and shapes for ONNX/OpenVINO); engines are always dynamic up to --batch")
    parser.add_argument("--imgsz", type=int, default=640, help="input size (default 640)")
    parser.add_argument("--workspace", type=float, default=4.0, help="TensorRT builder workspace in GB (default 4)")
    parser.add_argument("--triton-backend", choices=("auto", "onnx", "tensorrt"), default="auto",
                        help="model inside the Triton repository (auto: TensorRT where available, else ONNX)")
    parser.add_argument("--name", default="emotion", help="Triton model name (default emotion)")
    parser.add_argument("--out", help="output folder (default: next to the weights)")


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from exporters.export import ExportRequest, export
    from exporters.metadata import sidecar_path

    calib = None
    if args.calib:
        from training.train import prepare_dataset
        from training.train_config import load_train_config

        calib = prepare_dataset(load_train_config(overrides=[f"imgsz={args.imgsz}"]), args.calib)
    request = ExportRequest(
        weights=Path(args.weights), format=args.format, imgsz=args.imgsz, batch=args.batch, dynamic=args.dynamic,
        half=args.half, int8=args.int8, calib=calib, out=Path(args.out) if args.out else None,
        workspace_gb=args.workspace, triton_backend=args.triton_backend, name=args.name,
    )
    artifact = export(request, command=" ".join(["emotion-stream", *sys.argv[1:]]))
    print(f"exported: {artifact}")
    print(f"sidecar:  {sidecar_path(artifact)}")
    return 0


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "train", _run_train, "train an emotion detector on FER2013 (the paper's protocol)")
    parser.add_argument("--data", required=True, help="fer2013.csv, a train/test class-folder tree, or a data.yaml")
    parser.add_argument("--config", help="training YAML (default: configs/train_fer2013.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue the run's last.pt")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. epochs=3 imgsz=320 dataset.mode=paper")


def _run_train(args: argparse.Namespace) -> int:
    from training.train import run_training
    from training.train_config import load_train_config

    result = run_training(load_train_config(args.config, args.overrides), args.data, resume=args.resume)
    print(f"best weights: {result.best}")
    print(f"run folder:   {result.run_dir}")
    print(f"evaluate:     emotion-stream evaluate --weights {result.best} --data {result.data_yaml}")
    return 0


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "evaluate", _run_evaluate, "the paper's tables and figures for trained weights")
    parser.add_argument("--weights", required=True, help="trained weights (.pt or an export)")
    parser.add_argument("--data", required=True, help="a built data.yaml, or FER2013 (built as in --config)")
    parser.add_argument("--config", help="training YAML, for how FER2013 is built (default: configs/train_fer2013.yaml)")
    parser.add_argument("--split", default="test", help="split to evaluate (default test, else val)")
    parser.add_argument("--imgsz", type=int, default=None, help="inference size (default: the training config's)")
    parser.add_argument("--device", default="cpu", help="cpu or a GPU index")
    parser.add_argument("--out", default="runs/evaluate", help="report folder (default runs/evaluate)")


def _run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from training.evaluate import run_evaluation
    from training.train import prepare_dataset
    from training.train_config import load_train_config

    config = load_train_config(args.config)
    imgsz = args.imgsz or int(config.train.get("imgsz", 640))
    if not Path(args.weights).exists():
        raise EmotionStreamError(f"weights not found: {args.weights}")
    data_yaml = prepare_dataset(config, args.data)
    report = run_evaluation(args.weights, data_yaml, args.out, args.split, imgsz, args.device)
    overall = report.detection[-1]
    print(f"{report.split}: P {overall['P']:.3f}  R {overall['R']:.3f}  mAP50 {overall['mAP50']:.3f}  "
          f"mAP50-95 {overall['mAP50-95']:.3f}  classifier accuracy {report.classifier['accuracy']:.3f}")
    print(f"report: {Path(args.out) / 'report.md'} (and report.json, {len(report.figures)} figures)")
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "report", _run_report, "interview report of a finished process run")
    parser.add_argument("out_dir", help="the run's folder (e.g. runs/process/interview-01)")
    parser.add_argument("--annotate", action="store_true", help="also write annotated.mp4")
    parser.add_argument("--video", help="source video for --annotate (default: the one the run recorded)")


def _run_report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report

    for path in write_report(args.out_dir, annotate=args.annotate, video=args.video):
        print(path)
    return 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "demo", _run_demo, "end-to-end demo on synthetic data (no inputs needed)")
    parser.add_argument("--redis", help="Redis URL (default: $REDIS_URL, else a private redis-server)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the tiny model")


def _run_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    agreement = run_demo(args.out, redis_url=args.redis or os.environ.get("REDIS_URL"), epochs=args.epochs)
    return 0 if agreement.passed else 1


def _add_bench(commands: argparse._SubParsersAction) -> None:
    parser = _command(commands, "bench", _run_bench, "pipeline throughput against YOLO.predict on one video")
    parser.add_argument("video", help="video file")
    _model_flags(parser)
    parser.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    parser.add_argument(
        "--streams", type=int, help="live mode: N copies of VIDEO paced at its frame rate, as cameras (serve path)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="live mode: how long to run (default 30)")
    parser.add_argument("--redis", help="live mode: Redis URL (default: a private redis-server)")
    parser.add_argument("--backends", help="compare CPU runtimes for .pt weights, e.g. pytorch,onnx,openvino")


def _run_bench(args: argparse.Namespace) -> int:
    from pipeline.bench import run_backend_bench, run_bench, run_live_bench

    config = load_config(args.config, _model_overrides(args) | {"redis.url": args.redis})
    if args.streams:
        run_live_bench(config, args.video, args.streams, args.seconds)
    elif args.backends:
        run_backend_bench(config, args.video, args.backends.split(","), max_frames=args.frames)
    else:
        run_bench(config, args.video, max_frames=args.frames)
    return 0


def _command(
    commands: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int], help_text: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM stops a run the way Ctrl-C does: sinks are flushed, results so far kept."""
    raise KeyboardInterrupt


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        os.environ.setdefault("YOLO_VERBOSE", "False")  # read when ultralytics is first imported


if __name__ == "__main__":
    sys.exit(main())
