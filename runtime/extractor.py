"""Embedding extractors: `load_extractor(path)` picks onnxruntime or a TFLite interpreter by file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


SELF_CHECK_MODES = ("on", "strict", "off")
ONNX_ENGINES = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class ExtractorOptions:
    """How to run an extractor.

    threads: intra-op threads (None: the backend's default). providers: onnxruntime execution providers
    in order of preference (None: CPU). delegate: path of a TFLite delegate library (an NPU or Edge TPU
    delegate such as libedgetpu.so.1) with delegate_options passed to it.
    self_check: what a bundle does with a file that fails its probes on this host (selfcheck.py): "on"
    (log one line and open the next candidate), "strict" (raise ValueError) or "off" (do not check).
    check_cache: the directory where verdicts are kept (None: $IMPRINT_CHECK_CACHE, else
    $XDG_CACHE_HOME/imprinting/selfcheck or ~/.cache/imprinting/selfcheck; "off": check every time).
    engine: what runs an ONNX file: "onnxruntime" (None: the default) or "openvino" (_openvino.py), on
    openvino_device ("CPU", "GPU", "NPU", "AUTO") at openvino_precision ("f32", "bf16", "f16"; set
    explicitly, since OpenVINO would otherwise pick bf16 or f16 by device). TFLite files run on LiteRT.
    """

    threads: int | None = None
    providers: tuple[str, ...] | None = None
    delegate: str | None = None
    delegate_options: dict[str, Any] = field(default_factory=dict)
    self_check: str = "on"
    check_cache: str | None = None
    engine: str | None = None
    openvino_device: str = "CPU"
    openvino_precision: str = "f32"

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        if self.self_check not in SELF_CHECK_MODES:
            raise ValueError(f"self_check must be one of {list(SELF_CHECK_MODES)}, got {self.self_check!r}")
        if self.engine not in (None, *ONNX_ENGINES):
            raise ValueError(f"engine must be one of {list(ONNX_ENGINES)} or None, got {self.engine!r}")
        if self.openvino_precision not in ("f32", "bf16", "f16"):
            raise ValueError(f"openvino_precision must be 'f32', 'bf16' or 'f16', got {self.openvino_precision!r}")


class Extractor(Protocol):
    """A loaded extractor. run(): float32 batch in `layout` -> raw float32 (n, embedding_dim).

    Backends also name what runs the file, for the self-check's key: `engine_version` (the library's
    version) and `device` (onnxruntime's providers, or the TFLite delegate); Bundle.open_extractor adds
    `entry`, the bundle file it runs."""

    path: Path
    layout: str
    input_size: int
    embedding_dim: int
    backend: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def load_extractor(path: str | os.PathLike[str], options: ExtractorOptions = ExtractorOptions(),
                   input_size: int | None = None) -> Extractor:
    """Open an `.onnx` file with onnxruntime (or OpenVINO: options.engine), a `.tflite` file with ai-edge-litert
    or an `.rknn` file with rknn-toolkit-lite2 (on a Rockchip board; it needs input_size, the bundle's)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"extractor file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx" and options.engine == "openvino":
        from ._openvino import OpenVinoExtractor

        return OpenVinoExtractor(path, options)
    if suffix == ".onnx":
        from ._onnx import OnnxExtractor

        return OnnxExtractor(path, options)
    if suffix == ".tflite":
        from ._tflite import TFLiteExtractor

        return TFLiteExtractor(path, options)
    if suffix == ".rknn":
        if input_size is None:
            raise ValueError(f"{path}: an .rknn file does not say its input size; give input_size (a bundle does)")
        from ._rknn import RknnExtractor

        return RknnExtractor(path, options, input_size)
    raise ValueError(f"unknown extractor file type {suffix!r} for {path}; expected .onnx, .tflite or .rknn")


def layout_of(shape: tuple, path: Path) -> tuple[str, int]:
    """(layout, input size) from a 4-d image input shape such as (N, 3, S, S) or (N, S, S, 3)."""
    if len(shape) != 4:
        raise ValueError(f"extractor {path} takes input of shape {shape}; expected a 4-d image batch")
    if shape[1] == 3 and isinstance(shape[2], int):
        return "NCHW", int(shape[2])
    if shape[3] == 3 and isinstance(shape[1], int):
        return "NHWC", int(shape[1])
    raise ValueError(f"extractor {path} takes input of shape {shape}; expected (N, 3, S, S) or (N, S, S, 3)")


def check_batch(batch: np.ndarray, ex: Extractor) -> np.ndarray:
    """Validate a preprocessed batch against an extractor's input; float32 contiguous on return."""
    s = ex.input_size
    want = (3, s, s) if ex.layout == "NCHW" else (s, s, 3)
    if batch.ndim != 4 or batch.shape[1:] != want:
        raise ValueError(f"extractor {ex.path.name} takes ({'N, ' + ', '.join(map(str, want))}) input, got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)
