"""Unit embeddings: the one check-and-normalize every embedding passes before it meets a weight matrix."""

from __future__ import annotations

import math

import numpy as np


def normalize_embeddings(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """Validate and L2-normalize embeddings: (D,) or (n, D) of any real dtype -> float32 (n, D).

    Raises ValueError for a wrong shape, NaN/inf or an all-zero embedding, so nothing bad can
    enter a weight matrix.
    """
    e = np.asarray(embeddings)
    if e.ndim == 1 and e.dtype == np.float32 and e.shape[0] == dim:
        # One float32 embedding (a camera frame's): the common case, without the general path's overhead.
        norm = math.sqrt(float(e @ e))
        if not math.isfinite(norm) or norm < 1e-6:
            check_norms(np.array([norm]))
        return (e / norm)[None, :]
    if e.ndim == 1:
        e = e[None, :]
    if e.ndim != 2 or e.shape[1] != dim:
        raise ValueError(f"expected embeddings of shape ({dim},) or (n, {dim}), got {np.shape(embeddings)}")
    if e.shape[0] == 0:
        raise ValueError("got no embeddings (an empty batch)")
    if not np.issubdtype(e.dtype, np.floating):
        raise ValueError(f"embeddings must be floating point, got dtype {e.dtype}")
    e = e.astype(np.float32, copy=False)
    if e.shape[0] == 1:
        norms = np.sqrt(np.array([np.dot(e[0], e[0])], np.float32))  # 3x faster than einsum for one row
    else:
        norms = np.sqrt(np.einsum("ij,ij->i", e, e))
    check_norms(norms)
    return e / norms[:, None]


def check_norms(norms: np.ndarray) -> None:
    """Raise ValueError unless every norm (n,) is finite and nonzero: a NaN or infinity anywhere in an
    embedding makes its norm non-finite, so one check on n numbers covers n x D."""
    if not np.isfinite(norms).all():
        raise ValueError("an embedding holds NaN or infinity (a broken extractor or input, or a damaged model file?)")
    if (norms < 1e-6).any():
        raise ValueError("an embedding is all zeros and has no direction (is the model file damaged?)")


def extractor_units(raw: np.ndarray) -> np.ndarray:
    """The extractor's output (n, D) -> unit rows float32 (n, D): the Recognizer's one normalization of an
    embedding (the classifier checks, cheaply, only what reaches it from outside)."""
    norms = np.sqrt(np.einsum("ij,ij->i", raw, raw))
    check_norms(norms)
    return (raw / norms[:, None]).astype(np.float32, copy=False)
