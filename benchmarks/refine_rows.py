"""An experiment: the paper's fine-tuning after imprinting, for the classifier rows only, in NumPy (issue 15).

Not part of the runtime: on CUB it did not beat imprinting (benchmarks/results/refine_trials.md, made by
`python benchmarks/refine_trials.py`), so no device runs it.

The extractor stays frozen, so fine-tuning the rows is a small problem over stored shot embeddings: softmax
cross-entropy on the cosine logits scale * cos(x, w_k), rows initialized from the imprinted ones and pulled
back towards them by a weight decay (so a few shots cannot drag a row far), Adam for a fixed number of
steps. Rows stay unit length (they are parameterized as v / |v|).

`refine_rows` is the optimizer; `plan_refinement` decides whether refining helps on this data at all: it holds
out one shot of every class that has enough, refines on the rest, and accepts only if the held-out shots are
classified at least as well (and with a lower loss) as by the imprinted rows. Base classes without shots
stay fixed; exemplar embeddings of them (when given) keep them in the softmax as competitors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RefineOptions:
    """steps of Adam at learning rate lr; decay: weight of (1/2)|w - w_imprinted|^2 per refined row;
    min_shots: classes with fewer shots keep their imprinted rows; check: hold out a shot per class and refine
    only when that says it helps."""

    steps: int = 50
    lr: float = 0.002
    decay: float = 0.05
    min_shots: int = 3
    check: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 10_000 or not 0 < self.lr <= 1 or self.decay < 0 or self.min_shots < 2:
            raise ValueError("steps must be in [1, 10000], lr in (0, 1], decay >= 0 and min_shots >= 2")


@dataclass(frozen=True)
class RefinePlan:
    """rows unit float32 (K, D) to use (the imprinted ones when refining was declined); refined: which rows
    changed (K,) bool; held-out top-1 and loss before and after (None without a check); why, in words."""

    rows: np.ndarray
    refined: np.ndarray
    before: tuple[float, float] | None
    after: tuple[float, float] | None
    seconds: float
    why: str


def refine_rows(
    rows: np.ndarray, trainable: np.ndarray, x: np.ndarray, y: np.ndarray, scale: float,
    options: RefineOptions = RefineOptions(),
) -> np.ndarray:
    """Fine-tune the trainable rows of unit rows float32 (K, D) on unit embeddings x (N, D) with class indices
    y (N,) into rows (K,); returns new unit rows float32 (K, D) (untrainable rows unchanged)."""
    w0 = np.asarray(rows, np.float32)
    train = np.flatnonzero(trainable)
    if not train.size or not x.shape[0]:
        return w0.copy()
    v = w0.copy()
    m = np.zeros((train.size, w0.shape[1]), np.float32)
    s2 = np.zeros_like(m)
    b1, b2, eps = 0.9, 0.999, 1e-8
    onehot_rows = np.arange(x.shape[0])
    for t in range(1, options.steps + 1):
        norms = np.linalg.norm(v[train], axis=1, keepdims=True)
        w = v.copy()
        w[train] = v[train] / norms
        logits = scale * (x @ w.T)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        p[onehot_rows, y] -= 1.0  # dL/dlogits * N
        g = (scale / x.shape[0]) * (p[:, train].T @ x)  # dL/dw for the trainable rows
        g += options.decay * (w[train] - w0[train])
        wt = w[train]
        g = (g - wt * np.einsum("ij,ij->i", wt, g)[:, None]) / norms  # through w = v / |v|
        m = b1 * m + (1 - b1) * g
        s2 = b2 * s2 + (1 - b2) * g * g
        v[train] -= options.lr * (m / (1 - b1**t)) / (np.sqrt(s2 / (1 - b2**t)) + eps)
    out = w0.copy()
    out[train] = v[train] / np.linalg.norm(v[train], axis=1, keepdims=True)
    return out


def held_out_score(rows: np.ndarray, x: np.ndarray, y: np.ndarray, scale: float) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of unit rows (K, D) on unit embeddings x (N, D), labels y (N,)."""
    logits = scale * (x @ rows.T)
    logits -= logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float((logits.argmax(1) == y).mean()), float(-logp[np.arange(len(y)), y].mean())


def plan_refinement(
    sums: np.ndarray, fixed_rows: np.ndarray, shots: np.ndarray, shot_class: np.ndarray, scale: float,
    exemplars: np.ndarray | None = None, exemplar_class: np.ndarray | None = None,
    options: RefineOptions = RefineOptions(), seed: int = 0,
) -> RefinePlan:
    """Decide and, if it helps, refine.

    sums float32 (K, D): every class's imprinted sum (its row is the normalized sum); fixed_rows bool (K,):
    classes never refined (e.g. base classes); shots unit float32 (N, D) with their classes shot_class (N,);
    exemplars unit (M, D) with classes (M,): extra training images of fixed classes (they compete, never
    change). Classes with fewer than min_shots shots keep their imprinted rows."""
    t0 = time.perf_counter()
    k = sums.shape[0]
    rows = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    counts = np.bincount(shot_class, minlength=k)
    trainable = (counts >= options.min_shots) & ~np.asarray(fixed_rows, bool)
    if not trainable.any():
        return RefinePlan(rows, trainable, None, None, time.perf_counter() - t0,
                          f"no class has {options.min_shots} or more stored shots: nothing to refine")
    ex = exemplars if exemplars is not None else np.zeros((0, sums.shape[1]), np.float32)
    ex_c = exemplar_class if exemplar_class is not None else np.zeros(0, np.int64)
    before = after = None
    if options.check:
        # Hold out one random shot of each trainable class; imprint and refine without it.
        rng = np.random.default_rng(seed)
        hold = np.zeros(len(shot_class), bool)
        for c in np.flatnonzero(trainable):
            hold[rng.choice(np.flatnonzero(shot_class == c))] = True
        part = _minus(sums, shots[hold], shot_class[hold])
        r0 = (part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        x = np.concatenate([shots[~hold], ex])
        y = np.concatenate([shot_class[~hold], ex_c])
        r1 = refine_rows(r0, trainable, x, y, scale, options)
        before = held_out_score(r0, shots[hold], shot_class[hold], scale)
        after = held_out_score(r1, shots[hold], shot_class[hold], scale)
        if after[0] < before[0] or (after[0] == before[0] and after[1] >= before[1]):
            return RefinePlan(rows, np.zeros(k, bool), before, after, time.perf_counter() - t0,
                              f"declined: on held-out shots refining gives top-1 {after[0]:.3f} (loss {after[1]:.3f}) "
                              f"against {before[0]:.3f} ({before[1]:.3f}) for imprinting")
    x = np.concatenate([shots, ex])
    y = np.concatenate([shot_class, ex_c])
    new = refine_rows(rows, trainable, x, y, scale, options)
    why = f"refined {int(trainable.sum())} classes" + (
        f": held-out top-1 {before[0]:.3f} -> {after[0]:.3f}, loss {before[1]:.3f} -> {after[1]:.3f}" if before else "")
    return RefinePlan(new, trainable, before, after, time.perf_counter() - t0, why)


def _minus(sums: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    out = sums.astype(np.float32).copy()
    np.subtract.at(out, c, x)
    return out
