"""Benchmark inputs that need no download: a 720p scripted video and an untrained YOLOv8m.

    python -m training.bench_assets runs/bench

Speed does not depend on trained weights (only on the architecture and image size), so an
untrained YOLOv8m with the seven emotion classes times the same as a trained one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.model_factory import untrained_detector
from training.synthetic_video import default_script, render_scripted_video


def make_bench_assets(folder: Path) -> tuple[Path, Path]:
    """Write (video, weights) into `folder` unless they are already there."""
    folder.mkdir(parents=True, exist_ok=True)
    video, weights = folder / "interview-720p.mp4", folder / "yolov8m-emotion.pt"
    if not video.exists():
        render_scripted_video(video, default_script(10.0), duration_s=10.0, fps=30, size=(1280, 720))
    if not weights.exists():
        untrained_detector(weights, "yolov8m.yaml")
    return video, weights


if __name__ == "__main__":
    for path in make_bench_assets(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench")):
        print(path)
