"""Refinement after imprinting, in NumPy: the paper's fine-tuning step without a training framework.

The extractor stays frozen. What is trained is what PyTorch's "head-only" fine-tuning trains on top of a
frozen backbone: a map of the embedding (here the identity plus a low-rank term, `EmbeddingMap`) and the
class rows, by softmax cross-entropy on the cosine logits `scale * (cos(map(x), w_k) + offset_k)`, each
class weighing the same however many shots it has (so classes taught from many photos do not crowd out the
rest), with Adam for a fixed number of steps from the imprinted rows and the identity map.

`plan_refinement` decides by itself whether it helps: it declines unless every class has at least
`min_shots` stored shots, holds out one shot of every class, refines on the rest, and refines for real (on
every shot) only when the held-out shots' cross-entropy is lower than with the imprinted rows. Everything
here is pure NumPy: arrays in, arrays out.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class RefineOptions:
    """rank of the map's low-rank term (0: train the rows only); steps of Adam at learning rate lr;
    min_shots: refining needs this many stored shots of every class (the map is shared by all classes, so a
    class with fewer would be moved on too little evidence: on CUB, classes of 1-5 shots lose 1-12 points);
    check: decide by held-out shots (False: always refine); seed: which shots are held out and the map's
    random start; threads: how many cores the training uses (0: all; the camera API uses 1, leaving the
    others to the loop)."""

    rank: int = 32
    steps: int = 25
    lr: float = 3e-3
    min_shots: int = 10
    check: bool = True
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank <= 4096:
            raise ValueError(f"rank must be in [0, 4096] (0: the rows only), got {self.rank}")
        if not 1 <= self.steps <= 10_000:
            raise ValueError(f"steps must be in [1, 10000], got {self.steps}")
        if not 0 < self.lr <= 1:
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        if self.min_shots < 2:
            raise ValueError(f"min_shots must be >= 2 (one shot is held out), got {self.min_shots}")
        if not 0 <= self.threads <= 256:
            raise ValueError(f"threads must be in [0, 256] (0: all cores), got {self.threads}")


@dataclass(frozen=True)
class EmbeddingMap:
    """x -> unit(x + (x @ v) @ u.T): the identity plus a rank-r term; u, v float32 (D, r)."""

    u: np.ndarray
    v: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Unit embeddings float32 (N, D) -> mapped unit embeddings float32 (N, D)."""
        return _unit(x + (x @ self.v) @ self.u.T)


@dataclass(frozen=True)
class Refinement:
    """A refined classifier state: the embedding map and unit rows float32 (K, D), one per class in the
    classifier's order. It belongs to exactly the classes and shots it was trained on: any change to them
    drops it (the imprinted sums stay, so dropping it is the undo)."""

    map: EmbeddingMap
    rows: np.ndarray
    # Refined cosines run lower than imprinted ones (the rows become more discriminative), so they are mapped
    # by cos_scale * cos + cos_shift onto the imprinted cosines' scale, fitted on the held-out shots' top-1
    # cosines (on every shot when refined without the check): the unknown threshold and the reported cosines
    # keep their meaning.
    cos_scale: float = 1.0
    cos_shift: float = 0.0

    def cosines(self, e: np.ndarray) -> np.ndarray:
        """Calibrated cosines float32 (N, K) of unit embeddings (N, D) to the refined rows."""
        c = self.map(e) @ self.rows.T
        if self.cos_scale != 1.0 or self.cos_shift != 0.0:
            c *= np.float32(self.cos_scale)
            c += np.float32(self.cos_shift)
        return c

    def check(self, k: int, d: int, where: str) -> None:
        """ValueError unless it fits K classes of D dimensions and holds finite numbers."""
        u, v, w = self.map.u, self.map.v, self.rows
        if u.ndim != 2 or u.shape[0] != d or v.shape != u.shape or w.shape != (k, d):
            raise ValueError(f"{where}: refinement arrays of shapes {u.shape}, {v.shape}, {w.shape} do not fit "
                             f"{k} classes of {d} dimensions")
        if not (np.isfinite(u).all() and np.isfinite(v).all() and np.isfinite(w).all()):
            raise ValueError(f"{where}: refinement arrays hold NaN or infinity")
        # The bounds _calibrated clamps to, with room for their float32 rounding in the store (0.01 -> 0.0099999998).
        if not (0.01 * (1 - 1e-6) <= self.cos_scale <= 100 * (1 + 1e-6) and abs(self.cos_shift) <= 10):
            raise ValueError(f"{where}: refinement cosine calibration {self.cos_scale}, {self.cos_shift} is out of range")


@dataclass(frozen=True)
class RefinePlan:
    """What `plan_refinement` decided: the refinement (None when declined), the held-out (top-1, loss)
    before and after (None without a check), the seconds it took, and why."""

    refinement: Refinement | None
    before: tuple[float, float] | None
    after: tuple[float, float] | None
    seconds: float
    why: str

    @property
    def refined(self) -> bool:
        return self.refinement is not None


def _usable_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def fit(
    x: np.ndarray, y: np.ndarray, rows: np.ndarray, scale: float, offsets: np.ndarray | None = None,
    options: RefineOptions = RefineOptions(), on_step: Callable[[int], None] | None = None,
) -> tuple[EmbeddingMap, np.ndarray]:
    """Train the map and the rows on unit embeddings x float32 (N, D) of classes y int (N,) in [0, K), from
    unit rows float32 (K, D) (the imprinted ones); offsets float32 (K,) are added to the cosines (the
    runtime's shot-aware calibration); on_step(t) is called after each step (a progress bar). Returns (map,
    new unit rows float32 (K, D))."""
    x = np.asarray(x, np.float32)
    n, d = x.shape
    k = rows.shape[0]
    off = np.zeros(k, np.float32) if offsets is None else np.asarray(offsets, np.float32)
    counts = np.bincount(y, minlength=k).astype(np.float32)
    # Every class present weighs the same: sample weight 1 / (its class's count x classes present).
    alpha = (1.0 / (counts[y] * np.count_nonzero(counts))).astype(np.float32)[:, None]
    rng = np.random.default_rng(options.seed)
    u = np.zeros((d, options.rank), np.float32)
    v = (rng.standard_normal((d, options.rank)) / np.sqrt(d)).astype(np.float32)
    wr = np.asarray(rows, np.float32).copy()
    params = [u, v, wr]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    # The loss is a sum over shots, so its gradients are sums over chunks of them: one chunk per core, each
    # in a Python thread (NumPy's products release the GIL). This uses the cores even where BLAS runs one
    # thread (the `imprint` command sets that so that BLAS does not take the cores from the extractor).
    workers = min(options.threads or _usable_cores(), max(1, n // 256))
    bounds = np.linspace(0, n, workers + 1).astype(int)
    chunks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        for t in range(1, options.steps + 1):
            if pool is None:
                _, grads = loss_and_grads(u, v, wr, x, y, alpha, off, scale)
            else:
                parts = list(pool.map(lambda c: loss_and_grads(u, v, wr, x[c], y[c], alpha[c], off, scale)[1], chunks))
                grads = tuple(sum(g[i] for g in parts) for i in range(3))
            for i, (p, gr) in enumerate(zip(params, grads)):
                m1[i] = b1 * m1[i] + (1 - b1) * gr
                m2[i] = b2 * m2[i] + (1 - b2) * gr * gr
                p -= options.lr * (m1[i] / (1 - b1**t)) / (np.sqrt(m2[i] / (1 - b2**t)) + eps)
            if on_step:
                on_step(t)
    return EmbeddingMap(u, v), _unit(wr)


def loss_and_grads(
    u: np.ndarray, v: np.ndarray, wr: np.ndarray, x: np.ndarray, y: np.ndarray, alpha: np.ndarray,
    off: np.ndarray, scale: float,
) -> tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The weighted cross-entropy and its gradients for u, v (D, r) and the unnormalized rows wr (K, D), on
    unit x (N, D), y (N,), sample weights alpha (N, 1) and offsets (K,).

    The mapped embeddings h = x + (x v) u^T are never formed: every (N, D) quantity is expanded into x and
    rank-r terms, so a step costs two (N, D) x (D, K) products and a few (N, D) x (D, r) ones, with no
    elementwise pass over (N, D) arrays (half the time of forming them, for the same numbers)."""
    r = u.shape[1]
    xuv = x @ np.concatenate([v, u], axis=1)    # (N, 2r): p = x v and x u in one pass over x
    p, xu = xuv[:, :r], xuv[:, r:]
    gram = u.T @ u                               # (r, r)
    pg = p @ gram
    hn = np.sqrt(np.maximum(np.einsum("ij,ij->i", x, x) + 2 * np.einsum("ij,ij->i", xu, p)
                            + np.einsum("ij,ij->i", pg, p), 1e-24))[:, None]   # |h| (N, 1)
    wn = np.maximum(np.linalg.norm(wr, axis=1, keepdims=True), 1e-12)
    w = wr / wn
    wu = w @ u                                   # (K, r)
    cos = (x @ w.T + p @ wu.T) / hn              # z w^T with z = h / |h|, (N, K)
    logits = scale * (cos + off)
    logits -= logits.max(1, keepdims=True)
    g = np.exp(logits)
    g /= g.sum(1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(-(alpha[:, 0] * np.log(np.maximum(g[rows, y], 1e-30))).sum())
    g[rows, y] -= 1.0
    gc = g * (scale * alpha)                     # dL/dcos (N, K)
    a = np.einsum("ij,ij->i", gc, cos)[:, None]  # z . dL/dz per row (N, 1)
    gh = gc / hn
    dw = gh.T @ x + (gh.T @ p) @ u.T             # dL/dw = gc^T z (K, D)
    q = p / hn
    q2 = a * q / hn
    zu = (xu + pg) / hn                          # z u (N, r)
    dhu = (gc @ wu - a * zu) / hn                # dL/dh u (N, r)
    xt = x.T @ np.concatenate([q2, dhu], axis=1)  # (D, 2r)
    du = w.T @ (gc.T @ q) - xt[:, :r] - u @ (p.T @ q2)
    dv = xt[:, r:]
    dwr = (dw - w * np.einsum("ij,ij->i", w, dw)[:, None]) / wn
    return loss, (du, dv, dwr)


def _calibrated(emap: EmbeddingMap, rows: np.ndarray, r0: np.ndarray, x: np.ndarray,
                spread: bool = True) -> Refinement:
    """The refinement with its cosines matched (mean and, with spread, spread of the top-1 cosine) to the
    imprinted rows r0 on unit embeddings x (N, D). Without held-out shots (no check) x are the training shots,
    whose refined cosines barely spread: matching the spread there would stretch new photos' cosines far past
    [-1, 1], so only the mean is matched."""
    c0 = (x @ r0.T).max(1)
    c1 = (emap(x) @ rows.T).max(1)
    a = float(np.std(c0) / np.std(c1)) if spread and len(x) > 1 and np.std(c1) > 1e-6 else 1.0
    a = min(max(a, 0.01), 100.0)
    return Refinement(emap, rows, a, float(np.mean(c0) - a * np.mean(c1)))


def held_out_score(rows: np.ndarray, x: np.ndarray, y: np.ndarray, scale: float,
                   offsets: np.ndarray | None = None) -> tuple[float, float]:
    """(top-1, mean cross-entropy) of unit rows (K, D) with offsets (K,) on unit embeddings x (N, D), y (N,)."""
    logits = scale * (x @ rows.T + (0.0 if offsets is None else offsets))
    logits -= logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float((logits.argmax(1) == y).mean()), float(-logp[np.arange(len(y)), y].mean())


def plan_refinement(
    sums: np.ndarray, shots: np.ndarray, shot_class: np.ndarray, scale: float,
    offsets: np.ndarray | None = None, options: RefineOptions = RefineOptions(),
    on_step: Callable[[int], None] | None = None,
) -> RefinePlan:
    """Decide whether to refine and, if it helps, refine.

    sums float32 (K, D): every class's imprinted sum (its row is the normalized sum); shots unit float32
    (N, D) with their classes shot_class int (N,): the stored shots (and, for classes taught elsewhere such
    as a bundle's base classes, exemplar embeddings); offsets float32 (K,): the calibration the runtime adds
    to each class's cosine. The held-out shots (one per class) are left out of both the imprinted rows and
    the refinement they are scored against (a bundle's trained base rows have seen their exemplars, so there
    the imprinted side scores optimistically and the check errs towards declining); when refining wins on
    them, the map and rows are trained again on every shot (on_step then counts 2 x steps)."""
    t0 = time.perf_counter()
    k = sums.shape[0]
    rows = _unit(np.asarray(sums, np.float32))
    counts = np.bincount(shot_class, minlength=k)
    if counts.min() < options.min_shots:
        return RefinePlan(None, None, None, time.perf_counter() - t0,
                          f"declined: {int((counts < options.min_shots).sum())} of {k} classes have fewer than "
                          f"{options.min_shots} stored shots (the fewest: {int(counts.min())})")
    if not options.check:
        emap, new = fit(shots, shot_class, rows, scale, offsets, options, on_step)
        return RefinePlan(_calibrated(emap, new, rows, shots, spread=False), None, None, time.perf_counter() - t0,
                          f"refined {k} classes (no check)")
    rng = np.random.default_rng(options.seed)
    hold = np.zeros(len(shot_class), bool)
    for c in range(k):
        hold[rng.choice(np.flatnonzero(shot_class == c))] = True
    part = np.asarray(sums, np.float32).copy()
    np.subtract.at(part, shot_class[hold], shots[hold])
    r0 = _unit(part)
    emap, r1 = fit(shots[~hold], shot_class[~hold], r0, scale, offsets, options, on_step)
    before = held_out_score(r0, shots[hold], shot_class[hold], scale, offsets)
    after = held_out_score(r1, emap(shots[hold]), shot_class[hold], scale, offsets)
    # The held-out loss decides, not the top-1: with one shot per class the top-1 moves in steps of 1/K and
    # can stay flat or dip while the refinement is better (benchmarks/results/refine_trials.md compares the
    # rules on pseudo-novel splits of base classes).
    if not after[1] < before[1]:  # a NaN loss declines too
        return RefinePlan(None, before, after, time.perf_counter() - t0,
                          f"declined: on {int(hold.sum())} held-out shots refining gives loss {after[1]:.3f} (top-1 "
                          f"{after[0]:.3f}) against {before[1]:.3f} ({before[0]:.3f}) for imprinting")
    # It helps: train again on every shot, the held-out ones too (one more shot per class is worth more than
    # the decision's exact match with what is returned). The cosine calibration stays the one fitted on the
    # held-out shots, out of sample: the same training with one shot fewer per class.
    held = _calibrated(emap, r1, r0, shots[hold])
    emap, new = fit(shots, shot_class, rows, scale, offsets, options, on_step)
    return RefinePlan(Refinement(emap, new, held.cos_scale, held.cos_shift), before, after, time.perf_counter() - t0,
                      f"refined {k} classes: on {int(hold.sum())} held-out shots loss {before[1]:.3f} -> "
                      f"{after[1]:.3f}, top-1 {before[0]:.3f} -> {after[0]:.3f}")
