"""The forward pass: eager, replayed from a CUDA graph per input shape, or `torch.compile`d.

Graphs and compiled code want fixed shapes, so in those modes a partial batch is padded to
the configured batch size and the padding's output is cut off. Whatever cannot run in the
asked mode (no CUDA, weights that are not `.pt`, a capture or compile error) runs eagerly,
with one log line saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum

import torch
from ultralytics.nn.autobackend import AutoBackend

log = logging.getLogger(__name__)


class CompileMode(str, Enum):
    """How the `.pt` model runs on CUDA (`model.compile`)."""

    OFF = "off"
    CUDA_GRAPH = "cudagraph"
    COMPILE = "compile"


class ForwardPass:
    """Calls the model on a prepared batch; returns the raw predictions [batch, 4 + classes, anchors]."""

    def __init__(self, backend: AutoBackend, device: torch.device, mode: CompileMode, batch_size: int) -> None:
        self.backend = backend
        self.device = device
        self.batch_size = batch_size
        self.mode = self._usable(mode)
        self._graphs: dict[tuple, tuple[torch.Tensor, torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._compiled = torch.compile(backend.model, dynamic=False) if self.mode is CompileMode.COMPILE else None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw predictions for `batch` (NCHW, the backend's dtype)."""
        if self.mode is CompileMode.CUDA_GRAPH:
            return self._replay(batch)
        if self.mode is CompileMode.COMPILE:
            try:
                return self._padded(batch, lambda full: _first(self._compiled(full)))
            except Exception as exc:  # torch.compile raises many types (backend, Triton, tracing)
                self._fall_back(f"torch.compile failed ({_first_line(exc)})")
        return _first(self.backend(batch))

    def _usable(self, mode: CompileMode) -> CompileMode:
        if mode is CompileMode.OFF:
            return mode
        if self.device.type != "cuda" or self.backend.format != "pt":
            log.warning("model.compile=%s needs .pt weights on a CUDA device; running %s weights on %s eagerly",
                        mode.value, self.backend.format, self.device)
            return CompileMode.OFF
        return mode

    def _replay(self, batch: torch.Tensor) -> torch.Tensor:
        key = (max(len(batch), self.batch_size), *batch.shape[1:], batch.dtype)
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(key)
            except Exception as exc:  # capture fails for many reasons (memory, unsupported ops)
                self._fall_back(f"CUDA graph capture failed ({_first_line(exc)})")
                return _first(self.backend(batch))
        static_in, graph, static_out = self._graphs[key]
        static_in[: len(batch)].copy_(batch)
        static_in[len(batch) :].zero_()
        graph.replay()
        return static_out[: len(batch)]

    def _capture(self, key: tuple) -> tuple[torch.Tensor, torch.cuda.CUDAGraph, torch.Tensor]:
        full, *shape, dtype = key
        static_in = torch.zeros((full, *shape), dtype=dtype, device=self.device)
        model = self.backend.model
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                model(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = _first(model(static_in))
        log.info("CUDA graph captured for input %s", tuple(static_in.shape))
        return static_in, graph, static_out

    def _padded(self, batch: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if len(batch) >= self.batch_size:
            return run(batch)
        padding = batch.new_zeros((self.batch_size - len(batch), *batch.shape[1:]))
        return run(torch.cat([batch, padding]))[: len(batch)]

    def _fall_back(self, reason: str) -> None:
        log.warning("%s; running the model eagerly from now on", reason)
        self.mode = CompileMode.OFF


def _first(output: torch.Tensor | list | tuple) -> torch.Tensor:
    return output[0] if isinstance(output, (list, tuple)) else output


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
