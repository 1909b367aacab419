"""Shot-aware calibration: a score offset for classes imprinted from few shots.

A class imprinted from one shot has a noisier, less central weight row than a base class averaged over
~30 images, so its cosines run lower and base classes win most of its test images (measured on CUB with
plain ImageNet features: 83% of 1-shot novel test images went to a base class). Adding a small offset
that depends only on a class's shot count restores the balance. The table is chosen at training time on
a pseudo-novel split of the base classes alone (`imprinting.export.lowshot.choose_novel_offset`) and
travels in the bundle manifest as `shot_offsets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class ShotOffsets:
    """Offsets by shot count: shots (m,) strictly increasing counts >= 1, offsets (m,) cosine units.

    Between table points the offset is interpolated linearly in log(count); below the first point it is
    the first offset, above the last the last (usually 0, so well-taught classes are not touched).
    """

    shots: tuple[int, ...]
    offsets: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.shots or len(self.shots) != len(self.offsets):
            raise ValueError("shot offsets need as many offsets as shot counts, at least one")
        if any(n < 1 for n in self.shots) or any(b <= a for a, b in zip(self.shots, self.shots[1:])):
            raise ValueError(f"shot counts must be >= 1 and strictly increasing, got {self.shots}")
        if not all(np.isfinite(o) and -1.0 <= o <= 1.0 for o in self.offsets):
            raise ValueError(f"shot offsets must be finite and within [-1, 1], got {self.offsets}")

    @classmethod
    def from_mapping(cls, table: Mapping[Any, Any]) -> "ShotOffsets":
        """From the manifest form {"1": 0.07, "5": 0.02, ...} (keys may be str or int)."""
        try:
            items = sorted((int(k), float(v)) for k, v in table.items())
        except (TypeError, ValueError) as err:
            raise ValueError(f"shot_offsets must map shot counts to numbers, got {dict(table)!r} ({err})") from None
        return cls(tuple(k for k, _ in items), tuple(v for _, v in items))

    def to_mapping(self) -> dict[str, float]:
        return {str(n): float(o) for n, o in zip(self.shots, self.offsets)}

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """Offsets float32 (K,) for classes with these shot counts int (K,)."""
        c = np.maximum(np.asarray(counts, np.float64), 1.0)
        return np.interp(np.log(c), np.log(np.asarray(self.shots, np.float64)), self.offsets).astype(np.float32)
