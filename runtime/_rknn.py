"""Rockchip NPU backend for `.rknn` files (RK3588, RK3566, ...): rknn-toolkit-lite2's RKNNLite, on the board.

The file is built by `imprint export-rknn` for one target SoC, with a fixed input of one (1, 3, S, S) image
and no normalization of its own, so it takes the runtime's preprocessed NCHW float32 input like the ONNX
files; a batch runs image by image. rknn-toolkit-lite2 is not on PyPI for every board: docs/npu.md says how
to install it. Every file goes through the self-check (selfcheck.py) with the NPU in its key, and a file
that does not load here (another SoC, no NPU driver) lets the runtime fall back to the CPU files.
"""

from __future__ import annotations

import logging
import threading
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np

from .extractor import ExtractorOptions, check_batch

log = logging.getLogger(__name__)


def require_rknnlite() -> ModuleType:
    try:
        from rknnlite import api
    except ImportError as err:
        raise ImportError("rknn-toolkit-lite2 (the Rockchip NPU runtime) is not installed; on an RK3588/RK3566 "
                          f"board see docs/npu.md ({err})") from None
    return api


def _version() -> str:
    try:
        return metadata.version("rknn-toolkit-lite2")
    except metadata.PackageNotFoundError:
        return "unknown"


class RknnExtractor:
    """An `.rknn` file on the board's NPU; input (N, 3, S, S) float32, run one image at a time.

    input_size must be given (the file does not say it before it runs); it is checked by a first run.
    Safe to share between threads: runs are serialized, and close() waits for a run."""

    backend = "rknn"
    layout = "NCHW"

    def __init__(self, path: Path, options: ExtractorOptions, input_size: int) -> None:
        api = require_rknnlite()
        self.path, self.input_size = path, int(input_size)
        self.engine_version = _version()
        self.device = "npu"
        self._lock = threading.Lock()
        self._rknn = api.RKNNLite(verbose=False)
        if self._rknn.load_rknn(str(path)) != 0:
            raise ValueError(f"rknn-toolkit-lite2 cannot load {path}; was it built for this board's SoC "
                             "(`imprint export-rknn --target`)?")
        if self._rknn.init_runtime(core_mask=api.RKNNLite.NPU_CORE_AUTO) != 0:
            self._rknn.release()
            raise ValueError(f"rknn-toolkit-lite2 cannot start the NPU for {path}: is the NPU driver (librknnrt.so) "
                             "installed and does the file's target match this SoC?")
        s = self.input_size
        self.embedding_dim = int(self.run(np.zeros((1, 3, s, s), np.float32)).shape[1])
        log.debug("loaded %s on the Rockchip NPU (rknn-toolkit-lite2 %s, %d-d)", path, self.engine_version,
                  self.embedding_dim)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, S, S) -> float32 (N, D), as the graph outputs it."""
        x = check_batch(batch, self)
        rows = []
        with self._lock:
            if self._rknn is None:
                raise ValueError(f"extractor {self.path.name} is closed")
            for image in x:
                out = self._rknn.inference(inputs=[image[None]], data_format=["nchw"])
                if not out or out[0] is None:
                    raise ValueError(f"the NPU returned no output for {self.path.name} (input {image.shape[1:]}px); "
                                     "is the file built for this input size?")
                rows.append(np.asarray(out[0], np.float32).reshape(-1))
        return np.stack(rows)

    def close(self) -> None:
        with self._lock:
            if self._rknn is not None:
                self._rknn.release()
                self._rknn = None
