"""What an export is asked for and what it answers: the (format, precision) table, `ExportOptions`,
`BaseClasses`, the per-file `FileReport` and the `ExportResult`. `exporters.export_bundle` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imprinting.runtime.bundle import EXTRACTOR_FILES, PRECISIONS, Manifest
from imprinting.runtime.bundle import FORMATS as FORMAT_NAMES  # the one list of formats and precisions
from imprinting.runtime.preprocess import PreprocessSpec
from imprinting.runtime.shot_offsets import ShotOffsets

from .model import CosineClassifier
from .parity import ParityReport, ParityThresholds

# (format, precision) -> (file name, input layout): the bundle layout the runtime owns (runtime/manifest.py).
FORMATS: dict[tuple[str, str], tuple[str, str]] = EXTRACTOR_FILES
DEFAULT_SCALE = 10.0  # softmax temperature for a plain pretrained extractor, which has no learned s


class ParityError(RuntimeError):
    """An exported file does not reproduce the PyTorch model closely enough."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how to check it.

    calib_count: int8 calibration images (100-300). parity_count: held-out images for the parity check.
    calib_dir: a folder of the user's own photos for both (recommended; otherwise scikit-image's samples).
    float_prefix_convs: leading convolutions kept in float in int8 files (the stem and first block of
    Lite0 lose the most to int8: ONNX mean cosine 0.988 all-int8, 0.996 with 3 float convs).
    strict: any file that fails its parity check fails the export (default: it is left out and recorded).
    quantize_embedding: int8 files quantize the embedding layer too (else it stays fp32: D x 1280 x 4 bytes).
    latency_runs: if > 0, time each file single-threaded at batch 1 (median of this many runs).
    unknown_false_accept: the share of photos of never-taught classes that the bundle's "unknown" threshold
    may let through (see unknown_threshold.py).
    probe_count: parity images stored in the bundle with their PyTorch fp32 embeddings (probes.npz) for the
    device's self-check (0: none; at most parity_count).
    """

    formats: tuple[str, ...] = FORMAT_NAMES
    precisions: tuple[str, ...] = PRECISIONS
    calib_count: int = 200
    parity_count: int = 48
    calib_dir: str | None = None
    float_prefix_convs: int = 3
    quantize_embedding: bool = True
    strict: bool = False
    thresholds: ParityThresholds = ParityThresholds()
    preprocess: PreprocessSpec = PreprocessSpec()
    name: str = "imprinting-efficientnet_lite0"
    seed: int = 0
    latency_runs: int = 0
    unknown_false_accept: float = 0.05
    probe_count: int = 8

    def __post_init__(self) -> None:
        for value, known, what in ((self.formats, FORMAT_NAMES, "format"), (self.precisions, PRECISIONS, "precision")):
            if not value:
                raise ValueError(f"choose at least one {what} from {list(known)}")
            for v in value:
                if v not in known:
                    import difflib

                    near = difflib.get_close_matches(v, known, n=1)
                    hint = f"; did you mean {near[0]!r}?" if near else ""
                    raise ValueError(f"unknown {what} {v!r}; choose from {list(known)}{hint}")
        if "int8" in self.precisions and not 1 <= self.calib_count <= 10000:
            raise ValueError(f"calib_count must be in [1, 10000] (100-300 recommended), got {self.calib_count}")
        if self.parity_count < 1:
            raise ValueError(f"parity_count must be >= 1, got {self.parity_count}")
        if not 0 < self.unknown_false_accept < 0.5:
            raise ValueError(f"unknown_false_accept must be in (0, 0.5), got {self.unknown_false_accept}")
        if not 0 <= self.probe_count <= min(self.parity_count, 64):
            raise ValueError(f"probe_count must be in [0, min(parity_count, 64)] = [0, {min(self.parity_count, 64)}], "
                             f"got {self.probe_count}")
        if self.float_prefix_convs < 0:
            raise ValueError(f"float_prefix_convs must be >= 0, got {self.float_prefix_convs}")

    def jobs(self) -> list[tuple[str, str]]:
        return [(f, p) for f in self.formats for p in self.precisions]


@dataclass(frozen=True)
class FileReport:
    """One exported file: its size in bytes, parity, and batch-1 single-thread latency (ms) if measured."""

    file: str
    format: str
    precision: str
    size_bytes: int
    parity: ParityReport
    latency_ms: float | None = None


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: Manifest
    files: tuple[FileReport, ...] = field(default_factory=tuple)
    rejected: tuple[FileReport, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class BaseClasses:
    """Trained base classes: labels (K,), the classifier (unit rows via unit_weight()), counts (K,), the
    shot-aware calibration chosen for them at training time (None: none) and exemplars (unit embeddings
    (M, D) of some training images with their classes (M,), for refinement; None: none)."""

    labels: tuple[str, ...]
    classifier: CosineClassifier
    counts: tuple[int, ...]
    shot_offsets: ShotOffsets | None = None
    exemplars: tuple[np.ndarray, np.ndarray] | None = None
