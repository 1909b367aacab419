"""The CUB-200-2011 dataset in its official layout, and the paper's low-shot split (Sec. 6.1).

Classes 1-100 are base (all their training images train the base model), classes 101-200 are novel
(n training images each are used), and the whole official test split is evaluated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV = "IMPRINT_CUB_ROOT"
NUM_BASE = 100


@dataclass(frozen=True)
class Cub:
    """Image paths (N,), 0-based labels int64 (N,), is_train bool (N,), class names (200,)."""

    root: Path
    paths: tuple[Path, ...]
    labels: np.ndarray
    is_train: np.ndarray
    class_names: tuple[str, ...]

    @property
    def is_base(self) -> np.ndarray:
        return self.labels < NUM_BASE

    def indices(self, train: bool, base: bool | None = None) -> np.ndarray:
        """Indices of the train or test split, optionally only base (True) or novel (False) classes."""
        mask = self.is_train == train
        if base is not None:
            mask &= self.is_base == base
        return np.flatnonzero(mask)


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The dataset root from the argument or $IMPRINT_CUB_ROOT, with a clear error when absent."""
    if root is None:
        root = os.environ.get(ENV)
    if not root:
        raise ValueError(f"give the CUB-200-2011 directory with --root or ${ENV}")
    path = Path(root)
    if not (path / "images.txt").is_file():
        raise ValueError(f"{path} is not a CUB-200-2011 directory (no images.txt); it should hold images/, "
                         "images.txt, classes.txt, image_class_labels.txt and train_test_split.txt")
    return path


def _table(path: Path) -> dict[int, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, value = line.split(" ", 1)
            out[int(key)] = value.strip()
    return out


def load_cub(root: str | os.PathLike[str] | None = None) -> Cub:
    """Read the official metadata files (no images are opened)."""
    root = resolve_root(root)
    try:
        images = _table(root / "images.txt")
        labels = _table(root / "image_class_labels.txt")
        split = _table(root / "train_test_split.txt")
        classes = _table(root / "classes.txt")
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the CUB metadata in {root}: {err}") from None
    ids = sorted(images)
    if set(ids) != set(labels) or set(ids) != set(split):
        raise ValueError(f"CUB metadata in {root} is inconsistent: images, labels and split list different ids")
    return Cub(
        root=root,
        paths=tuple(root / "images" / images[i] for i in ids),
        labels=np.array([int(labels[i]) - 1 for i in ids], np.int64),
        is_train=np.array([split[i] == "1" for i in ids]),
        class_names=tuple(classes[c].split(".", 1)[-1] for c in sorted(classes)),
    )


def draw_shots(cub: Cub, n: int, seed: int) -> np.ndarray:
    """n training-image indices per novel class (sorted by class), seeded: int64 (100 * n,)."""
    rng = np.random.default_rng(seed)
    train_novel = cub.indices(train=True, base=False)
    out = []
    for c in range(NUM_BASE, len(cub.class_names)):
        pool = train_novel[cub.labels[train_novel] == c]
        if len(pool) < n:
            raise ValueError(f"class {c + 1} has {len(pool)} training images, fewer than n = {n}")
        out.append(rng.choice(pool, size=n, replace=False))
    return np.concatenate(out)
