"""onnxruntime backend."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from ._deps import require_onnxruntime
from .extractor import ExtractorOptions, check_batch, layout_of

log = logging.getLogger(__name__)


class OnnxExtractor:
    """An ONNX extractor run by onnxruntime; input (N, 3, S, S) or (N, S, S, 3) float32.

    Safe to share between threads; runs are serialized (the session's threads already use the cores, and
    one inference at a time keeps latency and memory predictable), and close() waits for a run to end."""

    backend = "onnxruntime"

    def __init__(self, path: Path, options: ExtractorOptions) -> None:
        ort = require_onnxruntime()
        so = ort.SessionOptions()
        if options.threads is not None:
            so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        # Spinning threads burn the cores that a camera thread or a second session needs (2x slower here).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = list(options.providers or ["CPUExecutionProvider"])
        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(f"onnxruntime execution providers {missing} are not available here; available: {available}")
        try:
            self._session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"cannot load ONNX extractor {path}: {str(err).splitlines()[0]}") from None
        self.path = path
        self.engine_version = str(getattr(ort, "__version__", "unknown"))
        self.device = ",".join(self._session.get_providers())
        self._lock = threading.Lock()
        if len(self._session.get_inputs()) != 1 or len(self._session.get_outputs()) != 1:
            raise ValueError(f"ONNX extractor {path} has {len(self._session.get_inputs())} inputs and "
                             f"{len(self._session.get_outputs())} outputs; an extractor has one image input and one "
                             "embedding output (re-export it with `imprint export`)")
        inp = self._session.get_inputs()[0]
        out = self._session.get_outputs()[0]
        self._input, self._output = inp.name, out.name
        self.layout, self.input_size = layout_of(tuple(inp.shape), path)
        dim = out.shape[-1] if out.shape else None
        if not isinstance(dim, int):
            dim = int(self.run(np.zeros((1, *self._sample_shape()), np.float32)).shape[1])
        self.embedding_dim = int(dim)
        log.debug("loaded %s (%s, %d-d) with %s", path, self.layout, self.embedding_dim, providers)

    def _sample_shape(self) -> tuple[int, int, int]:
        s = self.input_size
        return (3, s, s) if self.layout == "NCHW" else (s, s, 3)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, ...) in this extractor's layout -> float32 (N, D), as the graph outputs it."""
        x = check_batch(batch, self)
        with self._lock:
            if self._session is None:
                raise ValueError(f"extractor {self.path.name} is closed")
            try:
                out = self._session.run([self._output], {self._input: x})[0]
            except Exception as err:  # onnxruntime's own exception types: one line, never a traceback
                raise ValueError(f"extractor {self.path.name} failed on a batch of shape {x.shape}: "
                                 f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        return np.asarray(out, np.float32).reshape(out.shape[0], -1)

    def close(self) -> None:
        with self._lock:
            self._session = None
