"""The forward pass: eager, replayed from a CUDA graph per input shape, or `torch.compile`d.

Graphs and compiled code want one shape: in those modes the detector feeds square
`imgsz` inputs, a partial batch is padded to the configured batch size (the padding's
output is cut off), and the graph is captured, or the model compiled, when the detector is
built, before the engine's threads run (a capture must not race other CUDA work, and
ultralytics' detection head rebuilds its anchors whenever the input shape changes).
Whatever cannot run in the asked mode (no CUDA, weights that are not `.pt`, a capture or
compile error) runs eagerly, with one log line saying why.
"""

from __future__ import annotations

import logging
from enum import Enum

import torch
from ultralytics.nn.autobackend import AutoBackend

from pipeline.core.errors import first_line

log = logging.getLogger(__name__)


class CompileMode(str, Enum):
    """How the `.pt` model runs on CUDA (`model.compile`)."""

    OFF = "off"
    CUDA_GRAPH = "cudagraph"
    COMPILE = "compile"


class ForwardPass:
    """Calls the model on a prepared batch; returns the raw predictions [batch, 4 + classes, anchors]."""

    def __init__(self, backend: AutoBackend, device: torch.device, mode: CompileMode, batch_size: int,
                 imgsz: int) -> None:
        self.backend = backend
        self.device = device
        self.batch_size = batch_size
        self.mode = self._usable(mode)
        self.shape = (batch_size, 3, imgsz, imgsz)
        """The one input shape graphs and compiled code run at."""
        self._graph: tuple[torch.Tensor, torch.cuda.CUDAGraph, torch.Tensor] | None = None
        self._compiled = None
        if self.mode is not CompileMode.OFF:
            self._prepare()

    @property
    def fixed_shape(self) -> bool:
        """True when inputs must be square `imgsz` (graph or compiled mode)."""
        return self.mode is not CompileMode.OFF

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw predictions for `batch` (NCHW, the backend's dtype)."""
        if self.mode is not CompileMode.OFF and tuple(batch.shape[1:]) != self.shape[1:]:
            # any other shape makes the detection head rebuild the anchors the graph or compiled code holds
            log.warning("input %s is not the %s the model was prepared for; running eagerly from now on",
                        tuple(batch.shape), self.shape)
            self.mode, self._graph, self._compiled = CompileMode.OFF, None, None
        if self.mode is CompileMode.OFF:
            return _first(self.backend(batch))
        run = self._replay if self.mode is CompileMode.CUDA_GRAPH else self._run_compiled
        return torch.cat([run(chunk) for chunk in batch.split(self.batch_size)])

    def _prepare(self) -> None:
        """Capture the graph or compile the model now, on the detector's device; eager if that fails."""
        dtype = torch.float16 if self.backend.fp16 else torch.float32
        try:
            with torch.cuda.device(self.device), torch.inference_mode():
                if self.mode is CompileMode.CUDA_GRAPH:
                    self._graph = self._capture(torch.zeros(self.shape, dtype=dtype, device=self.device))
                else:
                    log.info("compiling the model with torch.compile for input %s (minutes the first time)", self.shape)
                    self._compiled = torch.compile(self.backend.model, dynamic=False)
                    warm = torch.zeros(self.shape, dtype=dtype, device=self.device)
                    for _ in range(2):  # the head sets its anchors on the first call: the second compiles the rest
                        self._compiled(warm)
        except Exception as exc:  # capture and compilation fail for many reasons (memory, ops, Triton)
            log.warning("model.compile=%s failed (%s); running the model eagerly", self.mode.value, first_line(exc))
            self.mode, self._graph, self._compiled = CompileMode.OFF, None, None

    def _usable(self, mode: CompileMode) -> CompileMode:
        if mode is CompileMode.OFF:
            return mode
        if self.device.type != "cuda" or self.backend.format != "pt":
            log.warning("model.compile=%s needs .pt weights on a CUDA device; running %s weights on %s eagerly",
                        mode.value, self.backend.format, self.device)
            return CompileMode.OFF
        return mode

    def _replay(self, batch: torch.Tensor) -> torch.Tensor:
        static_in, graph, static_out = self._graph
        static_in[: len(batch)].copy_(batch)
        static_in[len(batch) :].zero_()
        graph.replay()
        return static_out[: len(batch)].clone()  # the next replay overwrites static_out

    def _capture(self, static_in: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.CUDAGraph, torch.Tensor]:
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

    def _run_compiled(self, batch: torch.Tensor) -> torch.Tensor:
        if len(batch) < self.batch_size:
            padding = batch.new_zeros((self.batch_size - len(batch), *batch.shape[1:]))
            return _first(self._compiled(torch.cat([batch, padding])))[: len(batch)]
        return _first(self._compiled(batch))


def _first(output: torch.Tensor | list | tuple) -> torch.Tensor:
    return output[0] if isinstance(output, (list, tuple)) else output
