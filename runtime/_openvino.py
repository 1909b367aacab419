"""OpenVINO backend for ONNX files (`pip install 'imprinting[openvino]'`): devices CPU, GPU, NPU or AUTO.

OpenVINO picks its own inference precision per device (bfloat16 for an fp32 file on a CPU with AVX-512 BF16,
float16 on GPUs), so this backend sets it explicitly: f32 unless ExtractorOptions.openvino_precision asks for
another; an int8 file's quantized operations stay int8 either way. Every file goes through the self-check
(selfcheck.py) with the device and the precision in its key.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import ModuleType

import numpy as np

from .extractor import ExtractorOptions, check_batch, layout_of

log = logging.getLogger(__name__)

_HINTS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}


def require_openvino() -> ModuleType:
    try:
        import openvino
    except ImportError as err:
        raise ImportError(f"OpenVINO is not installed; install it with: pip install 'imprinting[openvino]' ({err})") from None
    return openvino


class OpenVinoExtractor:
    """An ONNX extractor compiled by OpenVINO for one device; input (N, 3, S, S) float32, any batch.

    Safe to share between threads: runs are serialized on one infer request, and close() waits for a run."""

    backend = "openvino"

    def __init__(self, path: Path, options: ExtractorOptions) -> None:
        ov = require_openvino()
        device, hint = options.openvino_device, _HINTS[options.openvino_precision]
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if options.threads is not None:
            config["INFERENCE_NUM_THREADS"] = options.threads
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            self._compiled = core.compile_model(model, device, config)
        except Exception as err:  # OpenVINO raises RuntimeError subclasses of its own
            raise ValueError(f"cannot compile {path} for OpenVINO {device} ({hint}): {str(err).splitlines()[0]}; "
                             f"devices here: {core.available_devices}") from None
        self._request = self._compiled.create_infer_request()
        self.path = path
        self.engine_version = ov.get_version().split("-")[0]
        self.device = f"{device}:{hint}"
        shape = tuple(d.get_length() if d.is_static else "N" for d in model.input(0).get_partial_shape())
        self.layout, self.input_size = layout_of(shape, path)
        out = model.output(0).get_partial_shape()
        self._lock = threading.Lock()
        if out[-1].is_static:
            self.embedding_dim = int(out[-1].get_length())
        else:
            s = self.input_size
            self.embedding_dim = int(self.run(np.zeros((1, 3, s, s) if self.layout == "NCHW" else (1, s, s, 3),
                                                       np.float32)).shape[1])
        log.debug("compiled %s for OpenVINO %s (%s, %d-d)", path, self.device, self.layout, self.embedding_dim)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, ...) in this extractor's layout -> float32 (N, D), as the graph outputs it."""
        x = check_batch(batch, self)
        with self._lock:
            if self._request is None:
                raise ValueError(f"extractor {self.path.name} is closed")
            out = self._request.infer({0: x})[self._compiled.output(0)]
        out = np.asarray(out, np.float32)
        return out.reshape(out.shape[0], -1).copy()

    def close(self) -> None:
        with self._lock:
            self._request = None
            self._compiled = None
