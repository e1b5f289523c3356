"""Exporters: turn trained weights into deployable artifacts (ONNX, OpenVINO, TensorRT, Triton)."""
