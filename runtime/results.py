"""Small typed result objects returned by the runtime."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Classification:
    """The top-k answer for one image, best first.

    cosines are in [-1, 1] (plus the class's shot offset when the bundle has shot-aware calibration,
    see shot_offsets.py); probabilities are the softmax of scale * cosine over *all* classes, so they
    need not sum to 1 over the top k. unknown is the UnknownPolicy's verdict on the top-1 answer.
    """

    labels: tuple[str, ...]
    cosines: tuple[float, ...]
    probabilities: tuple[float, ...]
    unknown: bool = False

    @property
    def label(self) -> str | None:
        """The top-1 label, or None when the answer is unknown."""
        return None if self.unknown else self.labels[0]

    @property
    def score(self) -> float:
        """The top-1 cosine."""
        return self.cosines[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label"] = self.label
        d["labels"], d["cosines"], d["probabilities"] = list(self.labels), list(self.cosines), list(self.probabilities)
        return d
