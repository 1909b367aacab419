"""Small typed result objects returned by the runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Category:
    """One class in an answer (the way MediaPipe's `Category` is).

    cosine: between the embedding and the class's weight row (the max over its templates when a class has
    several), in [-1, 1]. score: what the classes are ranked by: the cosine plus the class's shot offset when
    the bundle has shot-aware calibration (see shot_offsets.py), else the cosine itself. probability: the
    softmax of scale * score over *all* classes, so the top k need not sum to 1. shots: images behind the class.
    """

    label: str
    score: float
    cosine: float
    probability: float
    shots: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "cosine": self.cosine, "probability": self.probability,
                "shots": self.shots}


@dataclass(frozen=True)
class Classification:
    """The top-k answer for one embedding, best first; unknown is the UnknownPolicy's verdict on the top one."""

    categories: tuple[Category, ...]
    unknown: bool = False

    @property
    def label(self) -> str | None:
        """The top-1 label, or None when the answer is unknown."""
        return None if self.unknown else self.categories[0].label

    @property
    def top(self) -> Category:
        """The top-1 category, even when the answer is unknown (its cosine says how close it came)."""
        return self.categories[0]

    @property
    def score(self) -> float:
        """The top-1 score (cosine plus shot offset)."""
        return self.categories[0].score

    @property
    def cosine(self) -> float:
        """The top-1 cosine."""
        return self.categories[0].cosine

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "unknown": self.unknown, "score": self.score, "cosine": self.cosine,
                "categories": [c.to_dict() for c in self.categories]}
