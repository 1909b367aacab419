"""From one row of class scores to an answer: the top k, their probabilities, and the unknown policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .results import Classification
from .shot_offsets import ShotOffsets


@dataclass(frozen=True)
class UnknownPolicy:
    """When a prediction is reported as "unknown".

    min_cosine: a top-1 score below this is unknown (None: never). min_margin: a top-1 minus top-2 score
    below this is unknown (None: never). min_evidence_by_shots (a bundle's shot-aware policy, chosen at export;
    replaces min_cosine when set): the top-1 class, with n shots whose unit embeddings sum to S, is unknown when
    its *evidence* cos * |S| / n (the mean cosine to its shots; the cosine itself for one shot or a bundle's base
    class) is below the table's value at n (linear in log(n) between its points, clamped at the ends). Well-taught
    classes answer strangers and friends alike with higher cosines; |S| / n measures by how much from the class's
    own shots.
    """

    min_cosine: float | None = None
    min_margin: float | None = None
    min_evidence_by_shots: ShotOffsets | None = None

    def __post_init__(self) -> None:
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
        if self.min_margin is not None and not 0.0 <= self.min_margin <= 2.0:
            raise ValueError(f"min_margin must be in [0, 2], got {self.min_margin}")
        if self.min_evidence_by_shots is not None and not isinstance(self.min_evidence_by_shots, ShotOffsets):
            raise ValueError("min_evidence_by_shots must be a ShotOffsets table (shot count -> minimum evidence), got "
                             f"{type(self.min_evidence_by_shots).__name__}")

    def is_unknown(self, best: float, margin: float) -> bool:
        """The verdict of min_cosine and min_margin on a top-1 score and margin (not the shot table)."""
        return (self.min_cosine is not None and best < self.min_cosine) or (
            self.min_margin is not None and margin < self.min_margin)

    def cosine_threshold(self, shots: int, inv_norm: float) -> float | None:
        """The top-1 class's cosine below which it is unknown: min_evidence_by_shots(n) * n / |S| for a class of
        `shots` = n shots and 1 / |S| = inv_norm (float64 from the float32 table value, as the Java core and the
        web demo compute it); min_cosine without a table."""
        if self.min_evidence_by_shots is None:
            return self.min_cosine
        t = float(self.min_evidence_by_shots(np.array([shots]))[0])
        return t * float(shots) * float(inv_norm)


def rank(
    scores: np.ndarray,
    cosines: np.ndarray,
    labels: Sequence[str],
    counts: np.ndarray,
    scale: float,
    top_k: int,
    policy: UnknownPolicy,
    inv_norms: np.ndarray | None = None,
    bars: np.ndarray | None = None,
) -> Classification:
    """The answer for one embedding from its scores float32 (K,) (what ranks: cosine + shot offset) and raw
    cosines float32 (K,) (the same array when there are no offsets), labels (K,), shot counts (K,) and the classes'
    1 / |sum| float32 (K,) (needed by a policy with min_evidence_by_shots; None: 1 / count, one direction), or
    their cosine bars float64 (K,) already computed (class_bars)."""
    n = scores.shape[0]
    m = min(max(top_k, 2), n)  # at least two, for the margin
    if m < n:
        # argpartition pays off only when the top is much smaller than the row.
        top = scores.argpartition(n - m)[n - m:]
        top = top[scores[top].argsort()[::-1]]
    else:
        top = scores.argsort()[::-1]
    best = scores[top].tolist()
    b0 = best[0]
    margin = b0 - best[1] if n > 1 else float("inf")
    idx = top[:top_k].tolist()
    cos = best[:top_k] if cosines is scores else cosines[idx].tolist()
    threshold, unknown = policy.min_cosine, policy.is_unknown(b0, margin)
    if policy.min_evidence_by_shots is not None:
        t0 = int(top[0])
        c0 = float(cosines[t0])
        bar = float(bars[t0]) if bars is not None else policy.cosine_threshold(
            int(counts[t0]), 1.0 / int(counts[t0]) if inv_norms is None else inv_norms[t0])
        threshold = bar + (b0 - c0)  # the same bar in score space, for the "unknown" alternative's probability
        unknown = c0 < bar or (policy.min_margin is not None and margin < policy.min_margin)
    # The softmax denominator is computed when probabilities are first asked for (results.py); `scores` is
    # this call's own array, so keeping it is safe.
    raw = ([labels[i] for i in idx], best[:top_k], cos, counts[idx].tolist(), b0, scale, scores, threshold)
    return Classification(raw=raw, unknown=unknown)


def class_bars(policy: UnknownPolicy, counts: np.ndarray, inv_norms: np.ndarray) -> np.ndarray | None:
    """Every class's cosine bar float64 (K,) under a policy with min_evidence_by_shots (None without one), from
    shot counts (K,) and 1 / |sum| float32 (K,): exactly UnknownPolicy.cosine_threshold, class by class."""
    t = policy.min_evidence_by_shots
    if t is None:
        return None
    c = np.asarray(counts)
    return t(c).astype(np.float64) * c.astype(np.float64) * np.asarray(inv_norms).astype(np.float64)
