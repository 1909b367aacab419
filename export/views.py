"""The inputs of the block-training path as a `torch.utils.data.Dataset`: each of N images in 1 + V views
(view 0: the centre crop), `views[(row, view)]` -> one float32 tensor, batched by a `DataLoader`.

Two sources: `ArrayViews`, cached backbone activations (N, 1 + V, ...) computed once (the middle path),
and `ImageViews`, the images themselves for full-network training (the paper's recipe), decoded in loader
worker processes with a fresh random crop and flip at every access of a view other than 0.

Batches are lists of (row, view) keys chosen by the caller (`blocks.fit_tail` draws them from its own
seeded generator, which a resumed run restores), not by a torch sampler.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imprinting.runtime.images import load_image
from imprinting.runtime.preprocess import PreprocessSpec, centre_crop_resized, normalize

from .embeddings import augmented_crops

Key = tuple[int, int]  # (row, view)


class Views(Dataset):
    """N images x num_views views: views[(row, view)] -> float32 tensor item_shape. subset(rows) keeps some
    rows (an index array or a boolean mask (N,)) without copying the data."""

    num_views: int
    item_shape: tuple[int, ...]
    workers: int = 0  # loader worker processes

    def __init__(self, count: int) -> None:
        self.rows = np.arange(count)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Key) -> torch.Tensor:
        row, view = key
        return torch.from_numpy(self._load(int(self.rows[row]), int(view)))

    def _load(self, index: int, view: int) -> np.ndarray:
        raise NotImplementedError

    def subset(self, rows: np.ndarray) -> "Views":
        out = copy.copy(self)
        out.rows = self.rows[np.asarray(rows)]
        return out

    def _loader_seed(self) -> int:
        return 0

    def loader(self, batches: Sequence[Sequence[Key]]) -> DataLoader:
        """The stacked batches (n, *item_shape), in the order given."""
        # A generator of the loader's own: workers' seeds must not be drawn from torch's global one,
        # which seeds the model.
        gen = torch.Generator().manual_seed(self._loader_seed())
        return DataLoader(self, batch_sampler=batches, num_workers=self.workers, generator=gen,
                          worker_init_fn=_seed_worker)

    def centre_batches(self, chunk: int) -> list[list[Key]]:
        """Every row's centre view, in row order, in batches of `chunk`."""
        return [[(r, 0) for r in range(i, min(i + chunk, len(self)))] for i in range(0, len(self), chunk)]


class ArrayViews(Views):
    """Cached activations float16/32 (N, V, ...)."""

    def __init__(self, arrays: np.ndarray) -> None:
        super().__init__(len(arrays))
        self.arrays = arrays
        self.num_views = arrays.shape[1]
        self.item_shape = tuple(arrays.shape[2:])

    def _load(self, index: int, view: int) -> np.ndarray:
        return self.arrays[index, view].astype(np.float32)


class ImageViews(Views):
    """Image files (N,) decoded on access: view 0 the centre crop, any other view a new random crop and flip
    (1 + views view indices); float32 (3, S, S), normalized."""

    def __init__(self, paths: Sequence[Path], spec: PreprocessSpec, views: int, seed: int = 0,
                 workers: int | None = None) -> None:
        super().__init__(len(paths))
        self.paths = [Path(p) for p in paths]
        self.spec = spec
        self.num_views = 1 + views
        self.item_shape = (3, spec.input_size, spec.input_size)
        self.workers = min(4, os.cpu_count() or 1) if workers is None else workers
        self.rng = np.random.default_rng(seed)

    def _load(self, index: int, view: int) -> np.ndarray:
        img = load_image(self.paths[index])
        crop = centre_crop_resized(img, self.spec) if view == 0 else augmented_crops(img, self.spec, 1, self.rng)[0]
        return normalize(crop[None], self.spec, "NCHW")[0]

    def _loader_seed(self) -> int:
        return int(self.rng.integers(1 << 62))  # fresh worker seeds for every pass: fresh crops


def _seed_worker(_: int) -> None:
    """A worker starts with a copy of its dataset's generator: reseed it, or every worker draws the same crops."""
    info = torch.utils.data.get_worker_info()
    if isinstance(info.dataset, ImageViews):
        info.dataset.rng = np.random.default_rng(info.seed)


def as_views(data: np.ndarray | Views) -> Views:
    """Views as they are; an array (N, V, ...) as ArrayViews."""
    return data if isinstance(data, Views) else ArrayViews(data)
