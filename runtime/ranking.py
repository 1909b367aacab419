"""From one row of class scores to an answer: the top k, their probabilities, and the unknown policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .results import Classification


@dataclass(frozen=True)
class UnknownPolicy:
    """When a prediction is reported as "unknown".

    min_cosine: a top-1 score below this is unknown (None: never). min_margin: a top-1 minus top-2 score
    below this is unknown (None: never).
    """

    min_cosine: float | None = None
    min_margin: float | None = None

    def __post_init__(self) -> None:
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
        if self.min_margin is not None and not 0.0 <= self.min_margin <= 2.0:
            raise ValueError(f"min_margin must be in [0, 2], got {self.min_margin}")

    def is_unknown(self, best: float, margin: float) -> bool:
        return (self.min_cosine is not None and best < self.min_cosine) or (
            self.min_margin is not None and margin < self.min_margin)


def rank(
    scores: np.ndarray,
    cosines: np.ndarray,
    labels: Sequence[str],
    counts: np.ndarray,
    scale: float,
    top_k: int,
    policy: UnknownPolicy,
) -> Classification:
    """The answer for one embedding from its scores float32 (K,) (what ranks: cosine + shot offset) and raw
    cosines float32 (K,) (the same array when there are no offsets), labels (K,) and shot counts (K,)."""
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
    # The softmax denominator is computed when probabilities are first asked for (results.py); `scores` is
    # this call's own array, so keeping it is safe.
    raw = ([labels[i] for i in idx], best[:top_k], cos, counts[idx].tolist(), b0, scale, scores, policy.min_cosine)
    return Classification(raw=raw, unknown=policy.is_unknown(b0, margin))
