"""Several templates per class: spherical k-means over a class's shots (an option beside the paper's mean)."""

from __future__ import annotations

import numpy as np


def kmeans_templates(shots: np.ndarray, k: int, iterations: int = 20) -> np.ndarray:
    """Up to k unit-length centres of unit embeddings, float32 (n, D) -> (min(k, n), D).

    Spherical k-means (cosine assignment, normalized means), seeded deterministically by farthest-point
    selection from the class mean, so the same shots always give the same templates.
    """
    if shots.ndim != 2 or shots.shape[0] == 0:
        raise ValueError(f"expected shots of shape (n, D) with n >= 1, got {shots.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = shots.astype(np.float32, copy=False)
    n = x.shape[0]
    k = min(k, n)
    mean = x.sum(0)
    if k == 1:
        return (mean / max(float(np.linalg.norm(mean)), 1e-12))[None, :].astype(np.float32)
    # Farthest-point seeding: start with the shot nearest the mean, then the least similar to the chosen.
    chosen = [int(np.argmax(x @ mean))]
    best = x @ x[chosen[0]]
    for _ in range(k - 1):
        nxt = int(np.argmin(best))
        chosen.append(nxt)
        best = np.maximum(best, x @ x[nxt])
    centres = x[chosen].copy()
    assign = np.full(n, -1)
    for _ in range(iterations):
        new_assign = np.argmax(x @ centres.T, axis=1)
        if np.array_equal(new_assign, assign):
            break
        assign = new_assign
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c = members.sum(0)
                centres[j] = c / max(float(np.linalg.norm(c)), 1e-12)
    return centres.astype(np.float32)


def class_templates(
    shots: list[list[np.ndarray]], sums: np.ndarray, inv_norms: np.ndarray, counts: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every class's templates float32 (M, D), grouped by class, and each class's first row (K,).

    shots: per class its kept unit shots; sums (K, D), inv_norms (K,), counts (K,) from the classifier.
    A class with at most one shot keeps its weight row; a base class with shots added keeps its trained
    row beside the k-means centres, because that row is not among the shots."""
    rows, starts, m = [], [], 0
    for c, per in enumerate(shots):
        starts.append(m)
        if len(per) <= 1:
            rows.append(sums[c : c + 1] * inv_norms[c])
        else:
            rows.append(kmeans_templates(np.asarray(per, np.float32), k))
            if counts[c] > len(per):
                rows.append(sums[c : c + 1] * inv_norms[c])
        m = sum(len(r) for r in rows)
    return np.concatenate(rows).astype(np.float32), np.asarray(starts, np.intp)
