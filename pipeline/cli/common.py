"""What the command modules share: model flags, exit codes, sub-command registration."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pipeline.core.config import CHOICES

EXIT_SOURCE_PROBLEM = 3
EXIT_REDIS_PROBLEM = 5
EXIT_INTERRUPTED = 130


def model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="model: .pt, .onnx, OpenVINO folder or .engine")
    parser.add_argument("--config", help="pipeline YAML (default: configs/pipeline.yaml)")
    parser.add_argument("--imgsz", type=imgsz_flag, metavar="PIXELS|auto",
                        help="inference size (default auto: the size the model states: a checkpoint's train_args, an "
                             "export's sidecar, metadata or fixed input; 640 when it states none)")
    parser.add_argument("--batch", type=int, help="frames per forward pass (default 8)")
    parser.add_argument("--device", help="cpu, cuda:N, or several: cuda:0,cuda:1 (one engine lane each; default cpu)")
    parser.add_argument("--conf", type=float, help="minimum face score (default 0.25)")
    parser.add_argument(
        "--cpu-backend",
        choices=CHOICES["model.cpu_backend"],
        help="runtime for .pt weights on the CPU (default auto: OpenVINO, else ONNX Runtime, else PyTorch, as "
        "installed; OpenVINO and ONNX exports are made once and cached)",
    )
    parser.add_argument("--half", choices=("auto", "true", "false"),
                        help="FP16 for .pt weights (default auto: on CUDA)")
    parser.add_argument("--compile", choices=("off", "cudagraph", "compile"),
                        help="CUDA: replay CUDA graphs or torch.compile the model (default off)")


def imgsz_flag(text: str) -> int | str:
    """--imgsz: a number of pixels or auto."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or auto, got {text!r}") from None


def model_overrides(args: argparse.Namespace) -> dict:
    return {
        "model.weights": args.weights,
        "model.imgsz": args.imgsz,
        "model.device": args.device,
        "model.conf": args.conf,
        "model.cpu_backend": args.cpu_backend,
        "model.half": args.half,
        "model.compile": args.compile,
        "batching.batch": args.batch,
    }


def redis_flags(parser: argparse.ArgumentParser) -> None:
    """The Redis contract's layout: --contract and --redis-cluster (redis.contract, redis.cluster)."""
    parser.add_argument("--contract", type=int, choices=CHOICES["redis.contract"],
                        help="Redis contract: 1 (emotion:frames:cam1, the default) or 2 (emotion:{cam1}:frames: "
                             "a source's keys in one hash slot, for Redis Cluster) (redis.contract)")
    parser.add_argument("--redis-cluster", action="store_true", default=None,
                        help="the Redis URL names a node of a Redis Cluster; needs --contract 2 (redis.cluster)")


def redis_overrides(args: argparse.Namespace) -> dict:
    return {"redis.contract": args.contract, "redis.cluster": args.redis_cluster}


def command(
    commands: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int], help_text: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser
