"""What a Recognizer is opened with (RecognizerOptions), what a frame gives (FrameAnswer), and the unknown
policy a bundle carries."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import Manifest
from .extractor import ExtractorOptions
from .ranking import UnknownPolicy
from .results import Classification
from .shot_offsets import ShotOffsets

log = logging.getLogger(__name__)

# The unknown threshold of bundles that carry none (exported before thresholds were calibrated).
FALLBACK_MIN_COSINE = 0.4


@dataclass(frozen=True)
class RecognizerOptions:
    """format/precision pick the bundle's extractor file (None: int8 ONNX first); extractor says how to
    run it; templates_per_class > 1 enables several k-means templates per class (None: what the class store
    was saved with, 1 for a new store; the setting is saved in the store); unknown sets when an
    answer is "unknown" (None: the bundle's calibrated threshold; UnknownPolicy() never); batch_size bounds
    the images run through the extractor at once (4: on a CPU larger batches are no faster and the runtime's
    memory grows with them, 231 MB at 16 against 124 MB at 4 for int8 ONNX, benchmarks/results/batch_size.md);
    shot_calibration applies the bundle's shot offsets (if it has any) when classifying (every taught shot's
    embedding is kept with its class, D x 4 bytes each, so answers can be explained, classes refined or
    re-templated, undone and merged exactly); mirror_shots imprints each taught image
    together with its horizontal mirror (the mean of both unit embeddings, still one shot): +0.16 to +1.23
    points on CUB's novel classes (benchmarks/results/mirror_trials.md) for one more extractor run per
    taught image, nothing at recognition."""

    format: str | None = None
    precision: str | None = None
    extractor: ExtractorOptions = ExtractorOptions()
    templates_per_class: int | None = None
    unknown: UnknownPolicy | None = None
    batch_size: int = 4
    shot_calibration: bool = True
    mirror_shots: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.templates_per_class is not None and self.templates_per_class < 1:
            raise ValueError(f"templates_per_class must be >= 1, got {self.templates_per_class}")


@dataclass(frozen=True)
class FrameAnswer:
    """What one camera frame gave: its unit embedding float32 (D,), the answer (None while there are no
    classes) and the seconds spent preprocessing, running the extractor and classifying."""

    embedding: np.ndarray
    result: Classification | None
    preprocess_s: float
    extract_s: float
    classify_s: float


def bundle_unknown_policy(m: Manifest) -> UnknownPolicy:
    """The unknown policy a bundle carries: the top-1 cosine threshold chosen at export for a stated false-accept
    rate on classes that were never taught (manifest calibration.unknown_min_cosine), or FALLBACK_MIN_COSINE for
    bundles exported before thresholds were calibrated; with the shot-aware table chosen at export
    (calibration.unknown_min_evidence_by_shots, see evidence_table) the table decides instead."""
    t = m.calibration.get("unknown_min_cosine")
    table = evidence_table(m.calibration.get("unknown_min_evidence_by_shots"))
    if isinstance(t, (int, float)) and not isinstance(t, bool) and -1.0 <= t <= 1.0:
        return UnknownPolicy(min_cosine=float(t), min_evidence_by_shots=table)
    log.info("bundle %s carries no unknown threshold; using %.2f", m.name, FALLBACK_MIN_COSINE)
    return UnknownPolicy(min_cosine=FALLBACK_MIN_COSINE, min_evidence_by_shots=table)


def evidence_table(value: Any) -> ShotOffsets | None:
    """The manifest's shot-aware unknown table {"1": 0.44, "2": 0.45, "5": 0.44, "10": 0.43} as ShotOffsets, or
    None (the single threshold rules) unless it is a non-empty object whose keys are shot counts written as
    plain decimals ("1".."999999999") and whose values are numbers (not booleans) in [-1, 1]: the rule the Java
    core and the web demo apply too."""
    if not isinstance(value, dict) or not value:
        return None
    if not all(isinstance(k, str) and re.fullmatch(r"[1-9][0-9]{0,8}", k) and isinstance(v, (int, float))
               and not isinstance(v, bool) and math.isfinite(v) and -1.0 <= v <= 1.0 for k, v in value.items()):
        log.warning("ignoring the bundle's malformed calibration.unknown_min_evidence_by_shots %r", value)
        return None
    return ShotOffsets.from_mapping(value)
