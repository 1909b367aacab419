"""The camera loop's options, and the vote that smooths its answer over frames."""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LoopOptions:
    """smoothing: frames voted over for the reported label; teach_frames: default N for teaching;
    stall_timeout: seconds without a frame before a stall is reported; max_frames: stop after this
    many (None: until the source ends); autosave: save the store after every change."""

    smoothing: int = 5
    teach_frames: int = 5
    stall_timeout: float = 5.0
    max_frames: int | None = None
    autosave: bool = True
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.smoothing < 1 or self.teach_frames < 1 or self.top_k < 1:
            raise ValueError("smoothing, teach_frames and top_k must be >= 1")
        if self.stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be positive, got {self.stall_timeout}")


class Smoother:
    """Majority vote over the last n top-1 answers (None = unknown); the label needs more than half."""

    def __init__(self, n: int) -> None:
        self.votes: collections.deque = collections.deque(maxlen=n)

    def update(self, label: str | None, score: float) -> tuple[str | None, float]:
        self.votes.append((label, score))
        counts = collections.Counter(v[0] for v in self.votes)
        best, c = counts.most_common(1)[0]
        if best is None or c * 2 <= len(self.votes):
            return None, 0.0
        return best, float(np.mean([s for lab, s in self.votes if lab == best]))

    def reset(self) -> None:
        self.votes.clear()
