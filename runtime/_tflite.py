"""TFLite backend through ai-edge-litert (XNNPACK on the CPU; delegates loadable by path)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from imprinting.quiet import quietly

from ._deps import require_litert
from .extractor import ExtractorOptions, check_batch, layout_of

log = logging.getLogger(__name__)


class TFLiteExtractor:
    """A TFLite extractor; the exported graphs take one image, so a batch is run one image at a time.

    Safe to share between threads: a TFLite interpreter is not (its input and output tensors are shared
    state, so two threads would swap images or crash it), so run() holds a lock from set to get."""

    backend = "litert"

    def __init__(self, path: Path, options: ExtractorOptions) -> None:
        interpreter = require_litert()
        delegates = []
        if options.delegate:
            try:
                delegates.append(interpreter.load_delegate(options.delegate, options.delegate_options))
            except (ValueError, OSError, RuntimeError) as err:
                raise ValueError(f"cannot load TFLite delegate {options.delegate}: {err}") from None
        try:
            self._interp = interpreter.Interpreter(
                model_path=str(path), num_threads=options.threads, experimental_delegates=delegates or None
            )
            quietly(self._interp.allocate_tensors)  # LiteRT prints its delegate notice on fd 2 here
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"cannot load TFLite extractor {path}: {str(err).splitlines()[0]}") from None
        self.path = path
        self.engine_version = _litert_version()
        self.device = f"delegate:{Path(options.delegate).name}" if options.delegate else "cpu"
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"TFLite extractor {path} has {len(ins)} inputs and {len(outs)} outputs; an extractor has "
                             "one image input and one embedding output (re-export it with `imprint export`)")
        inp, out = ins[0], outs[0]
        self._in, self._out = inp, out
        self.layout, self.input_size = layout_of(tuple(int(x) for x in inp["shape"]), path)
        self.embedding_dim = int(np.prod(out["shape"][1:]))
        self._lock = threading.Lock()
        log.debug("loaded %s (%s, %d-d)", path, self.layout, self.embedding_dim)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, ...) in this extractor's layout -> float32 (N, D)."""
        batch = check_batch(batch, self)
        with self._lock:
            if self._interp is None:
                raise ValueError(f"extractor {self.path.name} is closed")
            return np.concatenate([self._run_one(batch[i : i + 1]) for i in range(batch.shape[0])])

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        qin = self._in
        if qin["dtype"] != np.float32:
            # A fully quantized graph takes integers: quantize with the input's own scale and zero point.
            scale, zero = qin["quantization"]
            info = np.iinfo(qin["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(qin["dtype"])
        try:
            self._interp.set_tensor(qin["index"], x)
            self._interp.invoke()
        except (ValueError, RuntimeError) as err:  # one line, never a traceback
            raise ValueError(f"extractor {self.path.name} failed: {str(err).splitlines()[0]}") from None
        y = self._interp.get_tensor(self._out["index"])
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.reshape(1, -1).astype(np.float32, copy=False)

    def close(self) -> None:
        with self._lock:
            self._interp = None


def _litert_version() -> str:
    from importlib import metadata

    for dist, prefix in (("ai-edge-litert", ""), ("tflite-runtime", "tflite-runtime ")):
        try:
            return prefix + metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return "unknown"
