"""Base-class exemplars: a few embeddings of each base class's training images, carried by a bundle.

Refinement (refine.py) trains a map of the embedding shared by every class; without examples of the base
classes it would move them blindly, so a bundle with base classes carries `per_class` unit embeddings of
each one's training images (float16, about 2.5 MB for 100 classes x 10 x 1280) and `Recognizer.refine` adds
them to the user's stored shots. They are never imprinted: the base rows stay the trained ones.

File (`base_exemplars.npz`, read without pickle; see docs/formats.md): `embeddings.npy` float16 (M, D) unit
rows, `classes.npy` int64 (M,) indices into the bundle's base-class labels.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write

EXEMPLARS_FILE = "base_exemplars.npz"
_MEMBERS = ("embeddings.npy", "classes.npy")


def pick_exemplars(embeddings: np.ndarray, labels: np.ndarray, per_class: int = 10,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to per_class embeddings (N, D) of each class in labels int (N,), chosen at random with seed:
    (unit float32 (M, D), classes int64 (M,)), in class order."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    labels = np.asarray(labels, np.int64)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings {embeddings.shape} and labels {labels.shape} do not match: need (N, D) and (N,)")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)])
    e = np.asarray(embeddings[idx], np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12), labels[idx]


def write_exemplars(path: str | os.PathLike[str], embeddings: np.ndarray, classes: np.ndarray) -> None:
    """Write unit embeddings (M, D) of base classes int (M,) as float16 (temp file + rename)."""
    e = np.asarray(embeddings, np.float16)
    c = np.asarray(classes, np.int64)
    if e.ndim != 2 or c.shape != (len(e),):
        raise ValueError(f"exemplars need embeddings (M, D) and classes (M,), got {e.shape} and {c.shape}")
    atomic_write(Path(path), lambda f: np.savez(f, embeddings=e, classes=c))


def read_exemplars(path: str | os.PathLike[str], num_classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a bundle's exemplars: (unit float32 (M, D), classes int64 (M,) in [0, num_classes)); ValueError
    with the reason when the file is missing, corrupt or does not fit the bundle."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"base exemplars {path} do not exist; re-export the bundle")
    try:
        with zipfile.ZipFile(path) as z:
            if sorted(z.namelist()) != sorted(_MEMBERS):
                raise ValueError(f"members {sorted(z.namelist())}, expected {list(_MEMBERS)}")
        with np.load(path, allow_pickle=False) as z:
            e, c = z["embeddings"], z["classes"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"base exemplars {path} are corrupt: {err}") from None
    if e.dtype != np.float16 or e.ndim != 2 or e.shape[1] != dim or c.dtype != np.int64 or c.shape != (len(e),):
        raise ValueError(f"base exemplars {path} hold {e.dtype} {e.shape} and {c.dtype} {c.shape}; this bundle needs "
                         f"float16 (M, {dim}) and int64 (M,)")
    if len(c) and (c.min() < 0 or c.max() >= num_classes):
        raise ValueError(f"base exemplars {path} name classes outside the bundle's {num_classes} base classes")
    e = e.astype(np.float32)
    if not np.isfinite(e).all():
        raise ValueError(f"base exemplars {path} hold NaN or infinity")
    norms = np.linalg.norm(e, axis=1)
    if len(e) and np.abs(norms - 1).max() > 0.01:  # float16 unit rows are within 0.001 of length 1
        raise ValueError(f"base exemplars {path} are not unit embeddings (lengths {norms.min():.3f} to {norms.max():.3f})")
    return e / norms[:, None], c
