"""From one row of class scores to an answer: the top k, their probabilities, and the unknown policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import math

import numpy as np

from .results import Category, Classification


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
        top = np.argpartition(scores, n - m)[n - m:]
        top = top[np.argsort(scores[top])[::-1]]
    else:
        top = np.argsort(scores)[::-1]
    best = scores[top]
    b0 = float(best[0])
    margin = b0 - float(best[1]) if n > 1 else float("inf")
    # Softmax of scale * score over all classes, shifted by the top logit so exp never overflows.
    total = float(np.exp((scores - b0) * scale).sum())
    idx = top[:top_k].tolist()
    cos = cosines[idx].tolist() if cosines is not scores else best[:top_k].tolist()
    sc = best[:top_k].tolist()
    cats = tuple(
        Category(labels[i], s, c, math.exp((s - b0) * scale) / total, int(counts[i]))
        for i, s, c in zip(idx, sc, cos)
    )
    return Classification(cats, policy.is_unknown(b0, margin))
