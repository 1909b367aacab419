"""Parity of an exported extractor file with the PyTorch fp32 model, and its latency.

The exported file is run through the runtime's own loader (`imprinting.runtime.extractor`), so the check
covers exactly the code path a device uses, quantized input/output conversion included.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imprinting.runtime.extractor import ExtractorOptions, load_extractor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityThresholds:
    """Minimum mean cosine to PyTorch fp32 per precision, and minimum base-class top-1 agreement on the
    images that PyTorch assigns to a base class by a cosine margin of at least `top1_margin`."""

    cosine_fp32: float = 0.999
    cosine_int8: float = 0.99
    top1_fp32: float = 0.98
    top1_int8: float = 0.9
    top1_margin: float = 0.02

    def cosine(self, precision: str) -> float:
        return self.cosine_fp32 if precision == "fp32" else self.cosine_int8

    def top1(self, precision: str) -> float:
        return self.top1_fp32 if precision == "fp32" else self.top1_int8


@dataclass(frozen=True)
class ParityReport:
    """cosines float32 (N,) per held-out image; top1_agreement None without base classes."""

    file: str
    precision: str
    mean_cosine: float
    min_cosine: float
    top1_agreement: float | None
    passed: bool
    message: str


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def run_file(path: Path, inputs: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Embeddings float32 (N, D) of a preprocessed batch (N, ...) in the file's layout, via the runtime."""
    ex = load_extractor(path, ExtractorOptions(threads=threads))
    try:
        return ex.run(inputs)
    finally:
        ex.close()


def check_parity(
    path: Path,
    precision: str,
    inputs: np.ndarray,
    reference: np.ndarray,
    thresholds: ParityThresholds = ParityThresholds(),
    base_weights: np.ndarray | None = None,
) -> ParityReport:
    """Compare the file's embeddings of `inputs` with `reference` float32 (N, D) from PyTorch fp32.

    base_weights: unit templates float32 (K, D) of the base classes, or None; when given, the share of
    images whose nearest template is the same for both embeddings must reach the top-1 threshold. Only images
    that PyTorch itself decides by a cosine margin >= thresholds.top1_margin count: held-out photos of other
    things (the default calibration set) sit between base classes, where any rounding flips a near-tie.
    """
    out = run_file(path, inputs)
    if out.shape != reference.shape:
        raise RuntimeError(f"{path.name} outputs shape {out.shape} but PyTorch gives {reference.shape}")
    cos = np.sum(_unit(out) * _unit(reference), axis=1)
    mean_cos, min_cos = float(cos.mean()), float(cos.min())
    agree = None
    if base_weights is not None and len(base_weights) > 1:
        ref_logits = _unit(reference) @ base_weights.T
        top2 = np.sort(ref_logits, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) >= thresholds.top1_margin
        if clear.any():
            same = np.argmax(_unit(out) @ base_weights.T, 1) == np.argmax(ref_logits, 1)
            agree = float(np.mean(same[clear]))
    want_cos, want_top1 = thresholds.cosine(precision), thresholds.top1(precision)
    problems = []
    if not mean_cos >= want_cos:  # also catches NaN
        problems.append(f"mean cosine to PyTorch fp32 is {mean_cos:.4f} < {want_cos}")
    if agree is not None and not agree >= want_top1:
        problems.append(f"base-class top-1 agreement is {agree:.3f} < {want_top1}")
    msg = "; ".join(problems) or f"mean cosine {mean_cos:.5f} (min {min_cos:.5f})" + (
        f", top-1 agreement {agree:.3f}" if agree is not None else ""
    )
    log.info("parity %s (%s): %s", path.name, precision, msg)
    return ParityReport(path.name, precision, mean_cos, min_cos, agree, not problems, msg)


def measure_latency(path: Path, sample: np.ndarray, runs: int = 50, warmup: int = 5, threads: int = 1) -> float:
    """Median wall time in milliseconds of one batch-1 run of `sample` (1, ...) with `threads` threads."""
    ex = load_extractor(path, ExtractorOptions(threads=threads))
    try:
        for _ in range(warmup):
            ex.run(sample)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            ex.run(sample)
            times.append(time.perf_counter() - t)
    finally:
        ex.close()
    return float(np.median(times) * 1e3)
