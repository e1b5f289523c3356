"""A Triton Inference Server model repository that `tritonserver --model-repository` loads as is.

Layout: `<repo>/<name>/config.pbtxt`, `<repo>/<name>/1/model.onnx` (ONNX Runtime backend) or
`model.plan` (TensorRT backend, the bare plan without ultralytics' header). The batch
dimension is dynamic up to `max_batch`, with dynamic batching on; image size is fixed.
"""

from __future__ import annotations

import re
from pathlib import Path

from exporters.engine import write_bare_plan
from pipeline.core.errors import ConfigError, shown

STRIDES = (8, 16, 32)
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A Triton model name: one folder name in the repository, never `.` or `..` (checked apart)."""


def check_model_name(name: str, origin: str = "--name") -> str:
    """`name` if it is a valid model name (a single folder inside the repository); ConfigError otherwise."""
    if not MODEL_NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"{origin}: invalid Triton model name {shown(name)}: "
                          "use 1-64 of A-Z a-z 0-9 . _ - (not '.' or '..')")
    return name


def anchors_for(imgsz: int) -> int:
    """Prediction count of a YOLOv8 head at a square input of `imgsz`."""
    return sum((imgsz // stride) ** 2 for stride in STRIDES)


def build_repository(
    model_file: Path, repo: Path, name: str, max_batch: int, class_count: int, imgsz: int
) -> tuple[Path, str, str]:
    """Write the repository for an .onnx or .engine file; returns (config path, input name, output name)."""
    version = repo / check_model_name(name) / "1"
    version.mkdir(parents=True, exist_ok=True)
    if model_file.suffix == ".engine":
        write_bare_plan(model_file, version / "model.plan")
        platform, input_name, output_name = "tensorrt_plan", "images", "output0"
    else:
        input_name, output_name = _fixed_spatial_onnx(model_file, version / "model.onnx", imgsz, class_count)
        platform = "onnxruntime_onnx"
    config = repo / name / "config.pbtxt"
    config.write_text(
        _config_text(name, platform, max_batch, input_name, output_name, 4 + class_count, imgsz)
    )
    return config, input_name, output_name


def _config_text(
    name: str, platform: str, max_batch: int, input_name: str, output_name: str, channels: int, imgsz: int
) -> str:
    preferred = sorted({size for size in (1, max_batch // 2, max_batch) if size >= 1})
    return f"""name: "{name}"
platform: "{platform}"
max_batch_size: {max_batch}
input [
  {{
    name: "{input_name}"
    data_type: TYPE_FP32
    dims: [ 3, {imgsz}, {imgsz} ]
  }}
]
output [
  {{
    name: "{output_name}"
    data_type: TYPE_FP32
    dims: [ {channels}, {anchors_for(imgsz)} ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(str(size) for size in preferred)} ]
  max_queue_delay_microseconds: 2000
}}
instance_group [ {{ count: 1 }} ]
"""


def _fixed_spatial_onnx(source: Path, target: Path, imgsz: int, class_count: int) -> tuple[str, str]:
    """Copy an ONNX model with a dynamic batch and a fixed imgsz x imgsz input (Triton needs fixed dims)."""
    import onnx

    model = onnx.load(str(source))
    graph_input, graph_output = model.graph.input[0], model.graph.output[0]
    dims = graph_input.type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    for axis in (2, 3):
        dims[axis].ClearField("dim_param")
        dims[axis].dim_value = imgsz
    out_dims = graph_output.type.tensor_type.shape.dim
    out_dims[0].dim_param = "batch"
    out_dims[1].ClearField("dim_param")
    out_dims[1].dim_value = 4 + class_count
    out_dims[2].ClearField("dim_param")
    out_dims[2].dim_value = anchors_for(imgsz)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return graph_input.name, graph_output.name
