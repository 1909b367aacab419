"""The low-shot protocol on cached embeddings (NumPy only): imprinting and its variants, scored top-1.

All embeddings are unit float32 (N, D); classes are 0..C-1 with base classes first. Accuracy is
C-way top-1 on test images of novel classes and on all test images, as in the paper's Tables 1-2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imprinting.runtime.templates import kmeans_templates


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def class_means(emb: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Imprinted rows: the normalized mean embedding of each class in `classes`: (len(classes), D)."""
    return unit_rows(np.stack([emb[labels == c].sum(0) for c in classes]))


def xavier_rows(num: int, dim: int, seed: int) -> np.ndarray:
    """Random rows as Rand-noFT draws them (Xavier uniform), normalized."""
    bound = np.sqrt(6.0 / (num + dim))
    return unit_rows(np.random.default_rng(seed).uniform(-bound, bound, (num, dim)))


@dataclass(frozen=True)
class Scores:
    novel: float
    all: float


def score(pred: np.ndarray, labels: np.ndarray, novel_mask: np.ndarray) -> Scores:
    """Top-1 accuracy in percent on novel-class test images and on all of them."""
    right = pred == labels
    return Scores(novel=100.0 * right[novel_mask].mean(), all=100.0 * right.mean())


def predict(test: np.ndarray, rows: np.ndarray, novel_offset: float = 0.0, num_base: int = 100) -> np.ndarray:
    """argmax over classes of cosine (+ an offset on novel rows, classes >= num_base): int64 (N,)."""
    cos = test @ rows.T
    if novel_offset:
        cos[:, num_base:] += novel_offset
    return cos.argmax(1)


def predict_nearest_shot(test: np.ndarray, base_rows: np.ndarray, shots: np.ndarray, shot_labels: np.ndarray,
                         num_classes: int) -> np.ndarray:
    """Nearest neighbour over every stored novel shot (base classes keep their rows): the Figure 6 baseline."""
    cos = np.full((test.shape[0], num_classes), -np.inf, np.float32)
    cos[:, : base_rows.shape[0]] = test @ base_rows.T
    shot_cos = test @ shots.T
    for c in np.unique(shot_labels):
        cos[:, c] = shot_cos[:, shot_labels == c].max(1)
    return cos.argmax(1)


def predict_templates(test: np.ndarray, base_rows: np.ndarray, shots: np.ndarray, shot_labels: np.ndarray,
                      num_classes: int, k: int) -> np.ndarray:
    """Several k-means templates per novel class (the runtime's option), max over a class's templates."""
    cos = np.full((test.shape[0], num_classes), -np.inf, np.float32)
    cos[:, : base_rows.shape[0]] = test @ base_rows.T
    for c in np.unique(shot_labels):
        t = kmeans_templates(shots[shot_labels == c], k)
        cos[:, c] = (test @ t.T).max(1)
    return cos.argmax(1)


def choose_novel_offset(
    emb: np.ndarray, labels: np.ndarray, n: int, seeds: int = 3, grid: np.ndarray | None = None,
    holdout: int = 10,
) -> float:
    """A score offset for n-shot rows, chosen on a pseudo-novel split of the *base* classes only.

    Half the base classes play novel classes imprinted from n shots, the other half keep rows from their
    training images; `holdout` images per class are scored. The offset that maximizes the mean of the
    two halves' accuracies (base and novel test sets are about equal in size) is returned.
    """
    grid = np.round(np.arange(0.0, 0.31, 0.01), 2) if grid is None else grid
    classes = np.unique(labels)
    totals = np.zeros(len(grid))
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        perm = rng.permutation(classes)
        pseudo_base, pseudo_novel = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        rows, test_idx, test_lab = [], [], []
        for group, shots in ((pseudo_base, None), (pseudo_novel, n)):
            for c in group:
                idx = rng.permutation(np.flatnonzero(labels == c))
                held, pool = idx[:holdout], idx[holdout:]
                use = pool if shots is None else pool[:shots]
                rows.append(unit_rows(emb[use].sum(0)))
                test_idx.append(held)
                test_lab.append(np.full(len(held), len(rows) - 1))
        rows_a = np.stack(rows)
        t_idx, t_lab = np.concatenate(test_idx), np.concatenate(test_lab)
        nb = len(pseudo_base)
        cos = emb[t_idx] @ rows_a.T
        is_novel = t_lab >= nb
        for g, off in enumerate(grid):
            pred = (cos + np.where(np.arange(len(rows_a)) >= nb, off, 0.0)).argmax(1)
            right = pred == t_lab
            totals[g] += 0.5 * (right[is_novel].mean() + right[~is_novel].mean())
    return float(grid[int(np.argmax(totals))])


def shot_offsets(emb: np.ndarray, labels: np.ndarray, shots: tuple[int, ...] = (1, 2, 5, 10, 20),
                 holdout: int = 10) -> dict[str, float]:
    """The shot-aware calibration table for a bundle, {"1": offset, ...}, chosen on base classes only.

    emb unit float32 (N, D) of the base training images, labels (N,). Shot counts that leave a class
    without `holdout` test images are skipped (a small dataset gets a shorter table, or none).
    """
    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    return {str(n): choose_novel_offset(emb, labels, n, holdout=holdout) for n in shots if n + holdout <= smallest}
