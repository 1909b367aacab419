"""What a real class set satisfies: checked on every load, merge, import and save (ARCHITECTURE.md, contract 8).

A class is evidence: unit embeddings added up. So its count is a positive integer, its sum is finite and no
longer than its count, every stored shot is a unit row, and a class that keeps all its shots has exactly their
sum. Anything else was made by a broken or hostile writer, and accepting it would poison every later answer
(a NaN score on every frame, a save that fails for ever), so it is refused with one line.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import numpy as np

from .labels import validate_label

if TYPE_CHECKING:
    from .store import StoreData

MAX_COUNT = 2**40  # shots behind one class: far beyond any device, far below int64 overflow when merged
MAX_SCALE = 1000.0
MAX_TEMPLATES = 64
# float32 sums of unit rows drift by rounding; these bound it generously (a real store is far inside).
NORM_TOL = 1e-3


def content_id(row: np.ndarray) -> str:
    """The identity of a shot whose photo is unknown: 32 hex digits of SHA-256 over its float32 LE bytes."""
    return hashlib.sha256(np.asarray(row, "<f4").tobytes()).hexdigest()[:32]


def check_settings(scale: float, templates_per_class: int, where: str) -> None:
    """ValueError unless scale is finite in (0, MAX_SCALE] and templates_per_class an integer in [1, 64]."""
    if not (isinstance(scale, float) and math.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise ValueError(f"{where}: scale must be a number in (0, {MAX_SCALE:g}], got {scale!r}")
    if (not isinstance(templates_per_class, int) or isinstance(templates_per_class, bool)
            or not 1 <= templates_per_class <= MAX_TEMPLATES):
        raise ValueError(f"{where}: templates_per_class must be an integer in [1, {MAX_TEMPLATES}], "
                         f"got {templates_per_class!r}")


def check_labels(labels: tuple[str, ...], where: str) -> None:
    """Labels valid, already NFC and stripped (what validate_label makes of them), and unique."""
    for label in labels:
        try:
            valid = validate_label(label)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        if valid != label:
            raise ValueError(f"{where}: label {label!r} is not in normal form (NFC, no surrounding spaces)")
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise ValueError(f"{where}: label {dup!r} appears twice")


def check_store_data(data: "StoreData", where: str) -> None:
    """Every invariant of a class store; ValueError naming the first one broken. Shapes first (so that the
    numeric checks below may index freely), then numbers, then shots."""
    k, sums, counts = len(data.labels), data.sums, data.counts
    if sums.ndim != 2 or sums.shape[0] != k or counts.shape != (k,):
        raise ValueError(f"{where}: {k} labels but sums of shape {sums.shape} and counts of shape {counts.shape}")
    if sums.dtype != np.float32 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"{where}: sums must be float32 and counts integer, got {sums.dtype} and {counts.dtype}")
    check_settings(data.scale, data.templates_per_class, where)
    check_labels(data.labels, where)
    if k and (counts.min() < 1 or counts.max() > MAX_COUNT):
        raise ValueError(f"{where}: a class count is outside [1, 2^40]: {int(counts.min())}..{int(counts.max())}")
    if not np.isfinite(sums).all():
        raise ValueError(f"{where}: sums hold NaN or infinity")
    norms = np.linalg.norm(sums.astype(np.float64), axis=1)
    bad = np.flatnonzero(norms > counts * (1 + NORM_TOL))
    if bad.size:
        c = int(bad[0])
        raise ValueError(f"{where}: class {data.labels[c]!r} has a sum of length {norms[c]:.4g} from "
                         f"{int(counts[c])} unit shots (at most {int(counts[c])})")
    _check_shots(data, where)
    if data.refinement is not None:
        data.refinement.check(k, sums.shape[1], where)


def _check_shots(data: "StoreData", where: str) -> None:
    if (data.shots is None) != (data.shot_class is None):
        raise ValueError(f"{where}: shots and shot_class must come together")
    if data.shots is None:
        return
    shots, cls = data.shots, data.shot_class
    k, d = data.sums.shape
    if cls.ndim != 1 or shots.shape != (cls.shape[0], d) or shots.dtype != np.float32:
        raise ValueError(f"{where}: shots of shape {shots.shape} ({shots.dtype}) do not match {cls.shape[0]} "
                         f"shot classes of {d} dimensions")
    if data.shot_ids is None or len(data.shot_ids) != cls.shape[0]:
        raise ValueError(f"{where}: {cls.shape[0]} shots need as many shot ids")
    if not cls.size:
        return
    if not np.issubdtype(cls.dtype, np.integer) or cls.min() < 0 or cls.max() >= k:
        raise ValueError(f"{where}: a shot names a class that does not exist")
    if not np.isfinite(shots).all():
        raise ValueError(f"{where}: shots hold NaN or infinity")
    lengths = np.linalg.norm(shots.astype(np.float64), axis=1)
    if np.abs(lengths - 1).max() > NORM_TOL:
        raise ValueError(f"{where}: a stored shot is not a unit row (length {lengths[np.argmax(np.abs(lengths - 1))]:.4g})")
    per = np.bincount(cls, minlength=k)
    over = np.flatnonzero(per > data.counts)
    if over.size:
        c = int(over[0])
        raise ValueError(f"{where}: class {data.labels[c]!r} keeps {per[c]} shots but counts {int(data.counts[c])}")
    full = np.flatnonzero(per == data.counts)
    if full.size:
        total = np.zeros((k, d))
        np.add.at(total, cls, shots.astype(np.float64))
        gap = np.linalg.norm(total[full] - data.sums[full], axis=1)
        worst = int(np.argmax(gap))
        if gap[worst] > NORM_TOL * data.counts[full[worst]]:
            raise ValueError(f"{where}: class {data.labels[full[worst]]!r} keeps all its shots but they do not add up "
                             f"to its sum (off by {gap[worst]:.3g})")
    seen: set[tuple[int, str]] = set()
    for c, i in zip(cls.tolist(), data.shot_ids):
        if (c, i) in seen:
            raise ValueError(f"{where}: class {data.labels[c]!r} holds shot {i} twice")
        seen.add((c, i))
