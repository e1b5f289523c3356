"""The `export` command: deployable artifacts."""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.common import command, imgsz_flag


def add_export(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "export", _run_export, "export weights: TensorRT engine, ONNX, OpenVINO, Triton")
    parser.add_argument("weights", help="trained .pt weights")
    parser.add_argument("--format", required=True, choices=("engine", "onnx", "openvino", "triton"))
    parser.add_argument("--half", action="store_true", help="FP16 (engine, ONNX on GPU) or bf16/FP16 (OpenVINO)")
    parser.add_argument("--int8", action="store_true", help="INT8 quantisation, calibrated with --calib")
    parser.add_argument("--calib", help="data.yaml (or FER2013 data) whose training images calibrate INT8")
    parser.add_argument("--batch", type=int, default=8, help="maximum batch (default 8)")
    parser.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=True,
                        help="dynamic batch (and shapes for ONNX/OpenVINO); engines are always dynamic up to --batch")
    parser.add_argument("--imgsz", type=imgsz_flag, metavar="PIXELS|auto",
                        help="input size (default auto: the size the weights were trained at, from their train_args)")
    parser.add_argument("--workspace", type=float, default=4.0, help="TensorRT builder workspace in GB (default 4)")
    parser.add_argument("--triton-backend", choices=("auto", "onnx", "tensorrt"), default="auto",
                        help="model inside the Triton repository (auto: TensorRT where available, else ONNX)")
    parser.add_argument("--name", default="emotion", help="Triton model name (default emotion)")
    parser.add_argument("--out", help="output folder (default: next to the weights)")


def _run_export(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from exporters.export import ExportRequest, export, resolved
    from exporters.metadata import sidecar_path

    request = ExportRequest(
        weights=Path(args.weights), format=args.format, imgsz=None if args.imgsz in (None, "auto") else args.imgsz,
        batch=args.batch, dynamic=args.dynamic, half=args.half, int8=args.int8, out=Path(args.out) if args.out else None,
        workspace_gb=args.workspace, triton_backend=args.triton_backend, name=args.name,
    )
    request = resolved(request)  # the size decided (and a size other than the weights' named) once
    if args.calib:
        from training.train import prepare_dataset
        from training.train_config import load_train_config

        calib = prepare_dataset(load_train_config(overrides=[f"imgsz={request.imgsz}"]), args.calib)
        request = dataclasses.replace(request, calib=calib)
    artifact = export(request, command=" ".join(["emotion-stream", *sys.argv[1:]]))
    print(f"exported: {artifact}")
    print(f"sidecar:  {sidecar_path(artifact)}")
    return 0
