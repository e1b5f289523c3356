"""A plain install (no OpenVINO, maybe no ONNX Runtime): the default CPU path falls back, a named one refuses.

The command line runs in a subprocess where `sitecustomize` blocks the optional runtimes' imports
(`sys.modules[name] = None` is how Python refuses an import), as if their extras were not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.blocked_imports import emotion_stream_without
from training.script_agreement import iou

FALLBACK = "OpenVINO is not installed: running {runtime} on the CPU; pip install 'emotion-stream[openvino]' " \
           "for the faster CPU path"


def _process(video: Path, weights: Path, imgsz: int, out: Path, *extra: str) -> list[str]:
    return ["process", str(video), "--weights", str(weights), "--imgsz", str(imgsz), "--out", str(out), "--quiet",
            "--source-id", "plain", *extra]


def _faces(out: Path) -> list[list[dict]]:
    return [json.loads(line)["faces"] for line in (out / "plain" / "timeline.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def openvino_faces(scripted_video: tuple, weights: Path, imgsz: int, tmp_path_factory: pytest.TempPathFactory) -> list:
    """The faces of every frame on the default CPU path with everything installed: OpenVINO."""
    tmp_path = tmp_path_factory.mktemp("openvino")
    run = emotion_stream_without(_process(scripted_video[0], weights, imgsz, tmp_path / "out"), tmp_path, ())
    assert run.returncode == 0, run.stderr
    assert "weights run on openvino" in run.stderr and "OpenVINO is not installed" not in run.stderr
    return _faces(tmp_path / "out")


@pytest.mark.parametrize(("blocked", "runtime"), [(("openvino",), "ONNX Runtime"),
                                                  (("openvino", "onnxruntime"), "PyTorch")])
def test_the_default_cpu_path_falls_back_to_what_is_installed_with_the_same_faces(
    scripted_video: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path, openvino_faces: list,
    blocked: tuple[str, ...], runtime: str,
) -> None:
    video, truth = scripted_video
    run = emotion_stream_without(_process(video, weights, imgsz, tmp_path / "out", "--redis", redis_url), tmp_path, blocked)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(FALLBACK.format(runtime=runtime)) == 1
    assert "OpenVINO is not installed" not in run.stderr.replace(FALLBACK.format(runtime=runtime), "", 1)
    assert "Traceback" not in run.stderr
    assert redis.Redis.from_url(redis_url).xlen("emotion:frames:plain") == len(truth)
    if runtime == "ONNX Runtime":  # exported into the run's own cache, saying so before and after
        assert f"exporting {weights.name} to onnx for the CPU fast path (once; cached in" in run.stderr
        assert f"{weights.name} exported to onnx in " in run.stderr and "weights run on onnx" in run.stderr
    else:
        assert "exporting" not in run.stderr and not (tmp_path / "cache").exists()
    faces = _faces(tmp_path / "out")
    assert len(faces) == len(openvino_faces) == len(truth)
    matched = same_class = 0
    for ours, theirs in zip(faces, openvino_faces):
        assert len(ours) == len(theirs), "a face appeared or vanished"
        for face in ours:
            other = max(theirs, key=lambda f: iou(face["box"], f["box"]))
            assert iou(face["box"], other["box"]) >= 0.5
            matched += 1
            same_class += face["emotion"] == other["emotion"]
    # OpenVINO computes in bf16 on CPUs that support it: the same tolerance as tests/test_cpu_fast_path.py
    assert matched > len(faces) and same_class >= 0.97 * matched


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_a_cpu_backend_asked_for_by_name_that_is_not_installed_is_refused(
    scripted_video: tuple, weights: Path, imgsz: int, tmp_path: Path, backend: str
) -> None:
    args = _process(scripted_video[0], weights, imgsz, tmp_path / "out", "--cpu-backend", backend)
    run = emotion_stream_without(args, tmp_path, ("openvino", "onnxruntime"))
    needed = "openvino" if backend == "openvino" else "onnxruntime"
    assert run.returncode == 4 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        f"emotion-stream: error: --cpu-backend {backend} (model.cpu_backend) needs {needed}, not installed here: "
        f"pip install 'emotion-stream[{backend}]'"
    ]
    assert not (tmp_path / "out" / "plain").exists()


def test_an_export_format_that_is_not_installed_is_refused(weights: Path, tmp_path: Path) -> None:
    run = emotion_stream_without(["export", str(weights), "--format", "openvino", "--out", str(tmp_path / "out")], tmp_path,
                          ("openvino",))
    assert run.returncode == 4 and run.stderr.strip().splitlines() == [
        "emotion-stream: error: --format openvino needs openvino, not installed here: "
        "pip install 'emotion-stream[openvino]'"
    ]
    assert not (tmp_path / "out").exists()
