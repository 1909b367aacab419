"""Model inputs decoded on the fly, for full-network training (the paper's recipe): every access to a
training view draws a fresh random crop and flip, as the paper's augmentation does each epoch.

`ImageViews` stands in for a cached activation array (N, V, 3, S, S) in `blocks.fit_tail`: it answers
the few index forms that code uses (`x[idx, views]`, `x[:, 0]`, `x[rows]`, `x[a:b]`, `len`, `shape`).
View 0 is the centre crop; any other view index is a new random crop.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from imprinting.runtime.images import load_image
from imprinting.runtime.preprocess import PreprocessSpec, centre_crop_resized, normalize

from .embeddings import augmented_crops


class ImageViews:
    """paths (N,) -> float32 inputs (n, 3, S, S) on access; views: how many view indices exist (1 + random)."""

    def __init__(self, paths: Sequence[Path], spec: PreprocessSpec, views: int, seed: int = 0,
                 centre_only: bool = False, threads: int = 4, _parent: "ImageViews | None" = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.spec, self.views, self.centre_only = spec, views, centre_only
        # Subsets share their parent's generator, lock and decoding threads.
        self._rng = _parent._rng if _parent else np.random.default_rng(seed)
        self._lock = _parent._lock if _parent else threading.Lock()
        self._pool = _parent._pool if _parent else ThreadPoolExecutor(threads)
        s = spec.input_size
        self.shape = (len(self.paths), 1 + views, 3, s, s) if not centre_only else (len(self.paths), 3, s, s)

    def __len__(self) -> int:
        return len(self.paths)

    def _subset(self, rows: np.ndarray) -> "ImageViews":
        return ImageViews([self.paths[i] for i in rows], self.spec, self.views, centre_only=self.centre_only,
                          _parent=self)

    def _load(self, i: int, view: int) -> np.ndarray:
        img = load_image(self.paths[i])
        if view == 0:
            return centre_crop_resized(img, self.spec)
        with self._lock:  # one generator, drawn under a lock: threads decode in parallel
            seed = int(self._rng.integers(1 << 31))
        return augmented_crops(img, self.spec, 1, np.random.default_rng(seed))[0]

    def _batch(self, rows: Sequence[int], views: Sequence[int]) -> np.ndarray:
        crops = list(self._pool.map(self._load, rows, views))
        return normalize(np.stack(crops), self.spec, "NCHW")

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, second = key
            if isinstance(first, slice) and second == 0:  # x[:, 0]: the centre crops
                centre = self._subset(np.arange(len(self))[first])
                centre.centre_only = True
                centre.shape = (len(centre), *self.shape[2:])
                return centre
            rows = np.asarray(first)
            return self._batch(rows.tolist(), np.broadcast_to(np.asarray(second), rows.shape).tolist())
        if isinstance(key, slice) and self.centre_only:  # x[a:b] of the centre crops: a batch
            rows = np.arange(len(self))[key]
            return self._batch(rows.tolist(), [0] * len(rows))
        rows = np.arange(len(self))[key]  # an index array or a boolean mask: a subset
        return self._subset(rows)
