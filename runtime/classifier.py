"""The imprinted cosine classifier (the paper's Sec. 4): a reader of a ClassSet that scores embeddings.

logits = scale * W @ e, where each row of W is a class's normalized sum; base classes from a bundle and
imprinted classes live in the same matrix. What it derives from the classes (inverse norms, shot offsets,
k-means templates) is cached and rebuilt when the class set's version moves, so a camera thread can classify
while another thread teaches: both hold the class set's lock.
"""

from __future__ import annotations

import numpy as np

from .classset import ClassSet
from .ranking import UnknownPolicy, class_bars, rank
from .results import Classification
from .shot_offsets import ShotOffsets
from .templates import class_templates
from .unit import normalize_embeddings


class ImprintedClassifier:
    """Scores unit embeddings against a ClassSet's classes.

    templates_per_class > 1 (the class set's setting) imprints up to that many k-means centres per class from
    its shots (prediction takes the max over a class's templates); 1 is the paper's single averaged template.
    shot_offsets (from a bundle trained with base classes) adds a per-class offset by shot count to the
    cosines that classify ranks, so 1-shot classes can compete with base classes averaged over many images.
    """

    def __init__(self, classes: ClassSet, unknown: UnknownPolicy = UnknownPolicy(),
                 shot_offsets: ShotOffsets | None = None) -> None:
        self.classes = classes
        self.unknown = unknown
        self.shot_offsets = shot_offsets
        self._version = -1
        self._offsets = np.zeros(0, np.float32)
        self._templates: tuple[np.ndarray, np.ndarray] | None = None
        self._bars: tuple[int, UnknownPolicy, np.ndarray | None] | None = None  # (version, policy, bars)

    @property
    def dim(self) -> int:
        return self.classes.dim

    @property
    def weights(self) -> np.ndarray:
        """A copy of the imprinted unit weight rows, float32 (K, D) (the paper's W)."""
        with self.classes.lock:
            sums, inv_norms, _, _ = self.classes.arrays()
            return sums * inv_norms[:, None]

    def cosines(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine of each embedding (D,) or (n, D) to each class, float32 (n, K) (max over templates if
        several; a refinement's calibrated cosines when the classes are refined), without shot offsets."""
        e = normalize_embeddings(embeddings, self.dim)
        with self.classes.lock:
            return self._cosines(e)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """The scores classify ranks, float32 (n, K): cosines plus the shot offsets when there are some. The batch
        entry point for evaluations: argmax(axis=1) is the top-1 class index in the class set's label order."""
        e = normalize_embeddings(embeddings, self.dim)
        with self.classes.lock:
            cos = self._cosines(e)
            return cos + self._offsets if self.shot_offsets is not None else cos

    def classify(self, embeddings: np.ndarray, top_k: int = 5) -> list[Classification]:
        """Top-k classes for each embedding of (D,) or (n, D); one Classification per embedding."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        e = normalize_embeddings(embeddings, self.dim)
        with self.classes.lock:
            if not len(self.classes):
                raise ValueError("there are no classes yet: teach one first")
            cos = self._cosines(e)
            _, inv, counts, _ = self.classes.arrays()
            labels, scale, u = self.classes.labels, self.classes.scale, self.unknown
            if self._bars is None or self._bars[:2] != (self.classes.version, u):
                self._bars = (self.classes.version, u, class_bars(u, counts, inv))
            bars = self._bars[2]
            if self.shot_offsets is None:
                return [rank(c, c, labels, counts, scale, top_k, u, inv, bars) for c in cos]
            scores = cos + self._offsets
            return [rank(s, c, labels, counts, scale, top_k, u, inv, bars) for s, c in zip(scores, cos)]

    def nearest_shots(self, embedding: np.ndarray, label: str, k: int = 3) -> list[tuple[int, float]]:
        """The k stored shots of `label` nearest to one embedding (D,): (shot number from 1, cosine), nearest
        first; empty when the class keeps no shots (a bundle's base class)."""
        e = normalize_embeddings(embedding, self.dim)[0]
        rows, _ = self.classes.shots(label)
        if not rows.shape[0]:
            return []
        cos = rows @ e
        order = np.argsort(cos)[::-1][:k]
        return [(int(i) + 1, float(cos[i])) for i in order]

    def _cosines(self, e: np.ndarray) -> np.ndarray:
        """Under the class set's lock: cosines float32 (n, K) of unit rows (n, D)."""
        self._refresh()
        if self.classes.refinement is not None:
            return self.classes.refinement.cosines(e)
        sums, inv_norms, _, _ = self.classes.arrays()
        if self._templates is None:
            # One embedding (the camera's case): a matrix-vector product, scaled in place.
            cos = (sums @ e[0])[None, :] if e.shape[0] == 1 else e @ sums.T
            cos *= inv_norms
            return cos
        templates, starts = self._templates
        return np.maximum.reduceat(e @ templates.T, starts, axis=1)

    def _refresh(self) -> None:
        if self._version == self.classes.version:
            return
        sums, inv_norms, counts, shots = self.classes.arrays()
        self._offsets = (self.shot_offsets(counts) if self.shot_offsets is not None
                         else np.zeros(len(counts), np.float32))
        t = self.classes.templates_per_class
        self._templates = (class_templates(shots, sums, inv_norms, counts, t)
                           if t > 1 and len(counts) else None)
        self._version = self.classes.version
