"""The `train` and `evaluate` commands."""

from __future__ import annotations

import argparse

from pipeline.cli.common import command
from pipeline.core.errors import ConfigError, EmotionStreamError


def add_train(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "train", _run_train, "train an emotion detector on FER2013 (the paper's protocol)")
    parser.epilog = ("The run folder gets dataset.yaml: the dataset.* settings, imgsz and seed the data set was built "
                     "with; evaluate --weights <run>/weights/best.pt --data <FER2013> rebuilds the same split from it.")
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


def add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = command(commands, "evaluate", _run_evaluate, "the paper's tables and figures for trained weights")
    parser.epilog = ("FER2013 data is built with the dataset settings the weights' run saved (<run>/dataset.yaml, "
                     "found from <run>/weights/best.pt or last.pt), else with the training config's; --config and "
                     "dataset.* overrides win, and a line says which settings differ from the run's.")
    parser.add_argument("--weights", required=True, help="trained weights (.pt or an export)")
    parser.add_argument("--data", required=True,
                        help="a built data.yaml, or FER2013 (built with the run's dataset settings, see below)")
    parser.add_argument("--config", help="training YAML for how FER2013 is built (default: the run's saved "
                                         "dataset settings, else configs/train_fer2013.yaml)")
    parser.add_argument("--split", default="test", help="split to evaluate (default test, else val)")
    parser.add_argument("--imgsz", type=int, default=None,
                        help="inference size (default: the run's, else the training config's)")
    parser.add_argument("--device", default="cpu", help="cpu or a GPU index")
    parser.add_argument("--out", default="runs/evaluate", help="report folder (default runs/evaluate)")
    parser.add_argument("overrides", nargs="*", metavar="dataset.key=value",
                        help="how FER2013 is built, as for train, e.g. dataset.mode=paper dataset.split=official")


def _run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from training.evaluate import run_evaluation
    from training.run_dataset import evaluation_dataset
    from training.train import is_data_yaml, prepare_dataset

    dataset = evaluation_dataset(args.weights, args.config, args.overrides)
    if args.overrides and is_data_yaml(args.data):
        raise ConfigError(f"dataset overrides need FER2013 to build from; --data {args.data} is already built")
    imgsz = args.imgsz or int(dataset.config.train.get("imgsz", 640))
    if not Path(args.weights).exists():
        raise EmotionStreamError(f"weights not found: {args.weights}")
    if not is_data_yaml(args.data):
        print(dataset.note, flush=True)
    data_yaml = prepare_dataset(dataset.config, args.data)
    report = run_evaluation(args.weights, data_yaml, args.out, args.split, imgsz, args.device)
    overall = report.detection[-1]
    print(f"{report.split}: P {overall['P']:.3f}  R {overall['R']:.3f}  mAP50 {overall['mAP50']:.3f}  "
          f"mAP50-95 {overall['mAP50-95']:.3f}  classifier accuracy {report.classifier['accuracy']:.3f}")
    print(f"report: {Path(args.out) / 'report.md'} (and report.json, {len(report.figures)} figures)")
    return 0
