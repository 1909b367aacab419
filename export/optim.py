"""What every training path shares: its options, the paper's optimizer, one training step, and the epoch
search by the pseudo-novel check.

The search holds out a fifth of the base classes, trains on the rest, and after each epoch imprints the
held-out classes from 1 and 5 shots and scores them among all classes. Longer training keeps base accuracy
flat but can hurt new classes; the search picks the epoch that serves new classes best.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger(__name__)

# on_epoch(epoch, model) after each epoch; progress(epoch, pseudo-novel score) for the user.
OnEpoch = Callable[[int, nn.Module], None]
Progress = Callable[[int, float], None]


@dataclass(frozen=True)
class TrainOptions:
    """What the base-training paths share. dim: embedding size (0: the pooled features). lr: RMSProp step
    (see each path for which layers it moves). max_epochs bounds the epoch search; epochs (if set) skips it."""

    dim: int = 1280
    lr: float = 1e-3
    batch: int = 128
    max_epochs: int = 30
    epochs: int | None = None
    weight_decay: float = 1e-4
    scale_init: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 0:
            raise ValueError(f"dim must be >= 0, got {self.dim}")
        if self.max_epochs < 1 or (self.epochs is not None and self.epochs < 0):
            raise ValueError("max_epochs must be >= 1 and epochs >= 0")
        if not self.lr > 0 or self.batch < 1:
            raise ValueError("lr must be positive and batch >= 1")


def paper_optimizer(
    params: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    new_params: Iterable[nn.Parameter] | None = None,
    new_lr_factor: float = 10.0,
) -> tuple[torch.optim.RMSprop, torch.optim.lr_scheduler.StepLR]:
    """The paper's optimizer: RMSProp with momentum 0.9, its step decayed x0.94 every 4 epochs (call the
    scheduler's step() once an epoch). params move at lr; new_params (layers without pretrained weights:
    the embedding and the classifier) at new_lr_factor x lr, the paper's split (10x)."""
    groups: Iterable = params
    if new_params is not None:
        groups = [{"params": list(params), "lr": lr}, {"params": list(new_params), "lr": new_lr_factor * lr}]
    optim = torch.optim.RMSprop(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return optim, torch.optim.lr_scheduler.StepLR(optim, step_size=4, gamma=0.94)


def train_step(net: nn.Module, optim: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One cross-entropy step on a batch: inputs x (n, ...), class indices y int64 (n,)."""
    loss = nn.functional.cross_entropy(net(x), y)
    optim.zero_grad()
    loss.backward()
    optim.step()


def classifier_report(classifier: nn.Module, emb: np.ndarray, labels: np.ndarray) -> dict:
    """Training top-1 of a cosine classifier on unit embeddings float32 (N, D), labels int (N,), and its scale."""
    with torch.no_grad():
        pred = classifier(torch.from_numpy(emb)).argmax(1).numpy()
    return {"train_top1": float((pred == labels).mean()), "scale": float(classifier.scale.detach())}


def pseudo_novel_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seen classes, held-out classes (a fifth), training image indices: the seen classes' images but
    their last 3, which are scored as base test images)."""
    rng = np.random.default_rng(seed + 7)
    classes = np.unique(labels)
    held = np.sort(rng.choice(classes, size=max(2, len(classes) // 5), replace=False))
    seen = np.setdiff1d(classes, held)
    train = np.concatenate([np.flatnonzero(labels == c)[:-3] for c in seen])
    return seen, held, train


def pseudo_novel_score(emb: np.ndarray, labels: np.ndarray, seen: np.ndarray, held: np.ndarray,
                       shots: tuple[int, ...] = (1, 5), draws: int = 3) -> float:
    """Mean all-class top-1 when the `held` classes are imprinted from n shots beside the imprinted rows of
    the `seen` classes, on unit embeddings float32 (N, D) of every image, labels int (N,). Test images are
    the held classes' remaining images and the seen classes' last 3 (held out of training by the caller)."""
    # Seen classes get rows imprinted from their training images (not the trained classifier's rows): that is
    # what a bundle ships, and it scores the embedding itself, not how far the classifier has converged.
    rows_seen = np.stack([emb[np.flatnonzero(labels == c)[:-3]].sum(0) for c in seen])
    rows_seen /= np.linalg.norm(rows_seen, axis=1, keepdims=True)
    scores = []
    rng = np.random.default_rng(123)
    for n in shots:
        for _ in range(draws):
            rows, test_idx, test_lab = [], [], []
            for k, c in enumerate(held):
                idx = rng.permutation(np.flatnonzero(labels == c))
                s = emb[idx[:n]].sum(0)
                rows.append(s / np.linalg.norm(s))
                test_idx.append(idx[n:])
                test_lab.append(np.full(len(idx) - n, len(seen) + k))
            for k, c in enumerate(seen):
                idx = np.flatnonzero(labels == c)[-3:]
                test_idx.append(idx)
                test_lab.append(np.full(len(idx), k))
            w = np.concatenate([rows_seen, np.stack(rows)])
            ti, tl = np.concatenate(test_idx), np.concatenate(test_lab)
            scores.append(((emb[ti] @ w.T).argmax(1) == tl).mean())
    return float(np.mean(scores))


def search_epochs(
    labels: np.ndarray,
    max_epochs: int,
    fit: Callable[[np.ndarray, np.ndarray, int, int, OnEpoch], object],
    embed: Callable[[nn.Module | None], np.ndarray],
    seed: int = 0,
    check_every: int = 1,
    allow_zero: bool = True,
    progress: Progress | None = None,
) -> tuple[int, dict[int, float]]:
    """The epoch count whose imprinted held-out classes score best, and the score of every checked epoch
    (0: untrained). Ties go to fewer epochs.

    labels int (N,). fit(rows, y, num_classes, epochs, on_epoch) trains a fresh model on the images `rows`
    with labels y in [0, num_classes) and calls on_epoch(epoch, model) after each epoch. embed(model)
    returns unit embeddings float32 (N, D) of every image's centre view (None: the untrained reference).
    allow_zero=False leaves 0 epochs out of the choice (a random embedding layer must be trained)."""
    seen, held, train = pseudo_novel_split(labels, seed)
    remap = {c: k for k, c in enumerate(seen)}
    y = np.array([remap[c] for c in labels[train]])
    history = {0: pseudo_novel_score(embed(None), labels, seen, held)}

    def on_epoch(epoch: int, model: nn.Module) -> None:
        if epoch % check_every == 0:
            history[epoch] = pseudo_novel_score(embed(model), labels, seen, held)
            log.info("epoch %d: pseudo-novel %.4f", epoch, history[epoch])
            if progress:
                progress(epoch, history[epoch])

    fit(train, y, len(seen), max_epochs, on_epoch)
    best = max((e for e in history if e > 0 or allow_zero), key=lambda e: (round(history[e], 4), -e))
    return best, history


def rounded_history(history: dict[int, float]) -> dict[int, float]:
    """A search history as a report records it."""
    return {int(k): round(v, 4) for k, v in history.items()}
