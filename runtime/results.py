"""Small typed result objects returned by the runtime."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Category:
    """One class in an answer (the way MediaPipe's `Category` is).

    cosine: between the embedding and the class's weight row (the max over its templates when a class has
    several), in [-1, 1]. score: what the classes are ranked by: the cosine plus the class's shot offset when
    the bundle has shot-aware calibration (see shot_offsets.py), else the cosine itself. probability: the
    softmax of scale * score over *all* classes and, when the unknown policy has a threshold, one more
    alternative, "unknown", scored at the threshold: so a single class is not certain against nothing (a
    photo at cosine 0.25 to its only class, threshold 0.47, scale 10, gets 0.10). The top k need not sum to
    1. shots: images behind the class.
    """

    label: str
    score: float
    cosine: float
    probability: float
    shots: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "cosine": self.cosine, "probability": self.probability,
                "shots": self.shots}


class Classification:
    """The top-k answer for one embedding, best first; unknown is the UnknownPolicy's verdict on the top one.

    `categories` are built on first access: a camera that reads only `label` and `score` every frame does not
    pay for k result objects."""

    __slots__ = ("_categories", "_raw", "unknown")

    def __init__(self, categories: tuple[Category, ...] = (), unknown: bool = False, *,
                 raw: tuple | None = None) -> None:
        # raw: (labels, scores, cosines, shots, top score, scale, every class's score (K,), the unknown
        # threshold or None), from ranking.rank
        self._categories = tuple(categories) if raw is None else None
        self._raw = raw
        self.unknown = bool(unknown)

    @property
    def categories(self) -> tuple[Category, ...]:
        if self._categories is None:
            labels, scores, cosines, shots, b0, scale, row, threshold = self._raw
            # Softmax of scale * score over all classes (and "unknown" at the threshold), shifted by the top
            # logit so exp never overflows.
            total = float(np.exp((row - b0) * scale).sum())
            if threshold is not None:
                total += math.exp((threshold - b0) * scale)
            self._categories = tuple(Category(lab, s, c, math.exp((s - b0) * scale) / total, n)
                                     for lab, s, c, n in zip(labels, scores, cosines, shots))
        return self._categories

    @property
    def label(self) -> str | None:
        """The top-1 label, or None when the answer is unknown."""
        if self.unknown:
            return None
        return self._raw[0][0] if self._categories is None else self._categories[0].label

    @property
    def top(self) -> Category:
        """The top-1 category, even when the answer is unknown (its cosine says how close it came)."""
        return self.categories[0]

    @property
    def score(self) -> float:
        """The top-1 score (cosine plus shot offset)."""
        return self._raw[1][0] if self._categories is None else self._categories[0].score

    @property
    def cosine(self) -> float:
        """The top-1 cosine."""
        return self._raw[2][0] if self._categories is None else self._categories[0].cosine

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Classification):
            return NotImplemented
        return self.unknown == other.unknown and self.categories == other.categories

    def __repr__(self) -> str:
        return f"Classification(categories={self.categories!r}, unknown={self.unknown})"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "unknown": self.unknown, "score": self.score, "cosine": self.cosine,
                "categories": [c.to_dict() for c in self.categories]}


@dataclass(frozen=True)
class LearnReport:
    """What Recognizer.learn did: shots added to `label` (their ids, for an undo), the class's shot count after
    it (0: no such class yet), the inputs skipped as photos the class holds already (or given twice), and the
    inputs that could not be read, with why."""

    label: str
    added: tuple[str, ...]
    shots: int
    repeats: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "added": len(self.added), "shots": self.shots, "repeats": list(self.repeats),
                "failed": [{"image": f, "error": why} for f, why in self.failed]}
