"""`emotion-stream evaluate`: the source paper's tables and figures for a trained detector.

- Table 2 (detection, per class and all): images, instances, P, R, mAP50, mAP50-95, from
  ultralytics' validator on the chosen split.
- Table 1 (as a classifier): each ground-truth face takes the class of the best-scoring
  detection overlapping it (IoU >= 0.5; none counts as wrong): accuracy and per-class
  precision, recall, F1.
- Figures: ultralytics' confusion matrices, F1/P/R-confidence and PR curves; the label
  correlogram (`labels_correlogram.png`) and distribution (`labels.jpg`); the classifier's
  confusion matrix. Report as Markdown and JSON.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from exporters.loading import loadable_weights
from pipeline.core.yaml_loading import load_yaml_file
from pipeline.engine.detector import DetectorSettings, EmotionDetector
from training.fer2013 import DatasetError
from training.script_agreement import iou

PAPER_ALL = {"P": 0.841, "R": 0.847, "mAP50": 0.887, "mAP50-95": 0.814}
TOP_FACE_CONF = 0.01


@dataclass
class EvaluationReport:
    """The tables of the paper for one model on one split."""

    split: str
    data: str = ""
    """The data.yaml evaluated on."""
    build: dict | None = None
    """How it was built from FER faces (its build.json: source, settings, images per split); None when unknown."""
    detection: list[dict] = field(default_factory=list)
    classifier: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {"split": self.split, "data": self.data, "build": self.build, "detection": self.detection,
                "classifier": self.classifier, "figures": self.figures}


def run_evaluation(
    weights: str | Path, data_yaml: Path, out: str | Path, split: str = "test", imgsz: int = 640,
    device: str = "cpu", batch: int = 16,
) -> EvaluationReport:
    """Evaluate `weights` on `split` of `data_yaml`; write figures and report.{md,json} into `out`."""
    from ultralytics import YOLO

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_yaml_file(data_yaml, "data set file")
    if not isinstance(data, dict) or "names" not in data:
        raise DatasetError(f"{data_yaml}: not a detection data set (no 'names' mapping)")
    if split not in data:
        split = "val"
    names = [data["names"][i] for i in sorted(data["names"])]
    detector = EmotionDetector(weights, device, DetectorSettings(imgsz=imgsz, conf=TOP_FACE_CONF))  # checks all first
    with loadable_weights(Path(weights)) as readable:
        metrics = YOLO(str(readable)).val(
            data=str(data_yaml), split=split, imgsz=imgsz, batch=batch, device=device, plots=True,
            project=str(out.resolve()), name="val", exist_ok=True, verbose=False,
        )
    images, labels = _split_files(data_yaml, data, split)
    report = EvaluationReport(split, str(data_yaml), _build_record(data_yaml),
                              detection=_detection_table(metrics, names, len(images)))
    truth, predicted = _top_face_predictions(detector, images, labels, names)
    report.classifier = classifier_metrics(truth, predicted, names)
    report.figures = _figures(out, Path(metrics.save_dir), labels, names, report.classifier)
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2))
    (out / "report.md").write_text(format_markdown(report, Path(weights)))
    return report


def classifier_metrics(truth: list[int], predicted: list[int], names: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix; -1 in `predicted` is 'no face found'."""
    n = len(names)
    matrix = np.zeros((n, n + 1), np.int64)  # last column: missed
    for t, p in zip(truth, predicted):
        matrix[t, p if p >= 0 else n] += 1
    per_class = {}
    for c, name in enumerate(names):
        tp = matrix[c, c]
        precision = tp / matrix[:, c].sum() if matrix[:, c].sum() else 0.0
        recall = tp / matrix[c].sum() if matrix[c].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"support": int(matrix[c].sum()), "precision": round(float(precision), 4),
                           "recall": round(float(recall), 4), "f1": round(float(f1), 4)}
    total = int(matrix.sum())
    return {
        "faces": total,
        "accuracy": round(float(np.trace(matrix[:, :n]) / total), 4) if total else 0.0,
        "missed": int(matrix[:, n].sum()),
        "per_class": per_class,
        "confusion": matrix.tolist(),
    }


def format_markdown(report: EvaluationReport, weights: Path) -> str:
    """The report as Markdown: the paper's two tables, with its own figures beside ours."""
    lines = [f"# Evaluation of {weights.name} on the {report.split} split", "", f"Data set: {report.data}"]
    if report.build:
        settings = ", ".join(f"{key} {value}" for key, value in report.build["settings"].items())
        lines[-1] += f", built from {report.build.get('source')} ({settings})"
    lines += ["", "## Table 2: detection per class", "",
             "| class | images | instances | P | R | mAP50 | mAP50-95 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in report.detection:
        lines.append(f"| {row['class']} | {row['images']} | {row['instances']} | {row['P']:.3f} | {row['R']:.3f} | "
                     f"{row['mAP50']:.3f} | {row['mAP50-95']:.3f} |")
    lines.append(f"| paper, all (FER2013) | | | {PAPER_ALL['P']:.3f} | {PAPER_ALL['R']:.3f} | "
                 f"{PAPER_ALL['mAP50']:.3f} | {PAPER_ALL['mAP50-95']:.3f} |")
    c = report.classifier
    lines += ["", "## Table 1: as a classifier (best detection per ground-truth face)", "",
              f"Accuracy {c['accuracy']:.3f} over {c['faces']} faces ({c['missed']} not found). "
              "On FER2013's PrivateTest, single models reach about 0.73 and humans about 0.65.", "",
              "| class | support | precision | recall | F1 |", "| --- | --- | --- | --- | --- |"]
    for name, row in c["per_class"].items():
        lines.append(f"| {name} | {row['support']} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} |")
    lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in report.figures]
    return "\n".join(lines) + "\n"


def _build_record(data_yaml: Path) -> dict | None:
    """The builder's record beside `data_yaml` (build.json), or None for a data set built elsewhere."""
    try:
        record = json.loads((data_yaml.parent / "build.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("settings"), dict) else None


def _detection_table(metrics, names: list[str], image_count: int) -> list[dict]:
    rows = []
    box = metrics.box
    for position, c in enumerate(box.ap_class_index):
        p, r, ap50, ap = box.class_result(position)
        rows.append({"class": names[int(c)], "images": int(metrics.nt_per_image[c]),
                     "instances": int(metrics.nt_per_class[c]), "P": float(p), "R": float(r),
                     "mAP50": float(ap50), "mAP50-95": float(ap)})
    rows.append({"class": "all", "images": image_count, "instances": int(metrics.nt_per_class.sum()),
                 "P": float(box.mp), "R": float(box.mr), "mAP50": float(box.map50), "mAP50-95": float(box.map)})
    return rows


def _split_files(data_yaml: Path, data: dict, split: str) -> tuple[list[Path], list[Path]]:
    root = Path(data.get("path", data_yaml.parent))
    images = sorted((root / data[split]).glob("*.*"))
    if not images:
        raise DatasetError(f"{data_yaml}: no images in split {split!r}")
    labels = [Path(str(p.parent).replace("images", "labels", 1)) / f"{p.stem}.txt" for p in images]
    return images, labels


def _top_face_predictions(
    detector: EmotionDetector, images: list[Path], labels: list[Path], names: list[str], batch: int = 16
) -> tuple[list[int], list[int]]:
    truth, predicted = [], []
    for start in range(0, len(images), batch):
        frames = [cv2.imread(str(p)) for p in images[start : start + batch]]
        detections = detector.detect(frames)
        for number, (frame, label_file) in enumerate(zip(frames, labels[start : start + batch])):
            height, width = frame.shape[:2]
            rows = detections.rows(number)
            faces = list(zip(detections.xyxy[rows].tolist(), detections.confidence[rows].tolist(),
                             detections.class_id[rows].tolist()))
            for line in label_file.read_text().splitlines():
                c, cx, cy, w, h = (float(v) for v in line.split())
                box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
                overlapping = [face for face in faces if iou(box, face[0]) >= 0.5]
                best = max(overlapping, key=lambda face: face[1], default=None)
                truth.append(int(c))
                predicted.append(best[2] if best else -1)
    return truth, predicted


def _figures(out: Path, val_dir: Path, labels: list[Path], names: list[str], classifier: dict) -> list[str]:
    from ultralytics.utils.plotting import plot_labels

    rows = [line.split() for file in labels for line in file.read_text().splitlines()]
    array = np.asarray(rows, np.float32).reshape(-1, 5)
    plot_labels(array[:, 1:], array[:, 0], names=dict(enumerate(names)), save_dir=out)
    _plot_correlogram(array[:, 1:], out / "labels_correlogram.png")
    _plot_classifier_confusion(np.asarray(classifier["confusion"]), names, out / "classifier_confusion.png")
    for png in val_dir.glob("*.png"):
        shutil.copy2(png, out / png.name)
    return sorted(p.name for pattern in ("*.png", "labels*.jpg") for p in out.glob(pattern))


def _plot_correlogram(boxes: np.ndarray, path: Path) -> None:
    """Pairwise distributions of the labels' x, y, width and height (normalised)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["x", "y", "width", "height"]
    fig, axes = plt.subplots(4, 4, figsize=(8, 8))
    for i in range(4):
        for j in range(4):
            ax = axes[i, j]
            if i == j:
                ax.hist(boxes[:, i], bins=30, range=(0, 1), color="#1f77b4")
            else:
                ax.hist2d(boxes[:, j], boxes[:, i], bins=30, range=[[0, 1], [0, 1]], cmap="Blues")
            ax.set_xticks([] if i < 3 else [0, 0.5, 1])
            ax.set_yticks([] if j > 0 or i == j else [0, 0.5, 1])
            if i == 3:
                ax.set_xlabel(labels[j])
            if j == 0:
                ax.set_ylabel(labels[i])
    fig.suptitle(f"Label correlogram ({len(boxes)} boxes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_classifier_confusion(matrix: np.ndarray, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names) + 1), names + ["missed"], rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted (best detection on the face)")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(rows):
        if value >= 0.005:
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.5 else "black", fontsize=8)
    ax.set_title(f"Classifier confusion, accuracy {np.trace(matrix[:, :len(names)]) / max(matrix.sum(), 1):.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
