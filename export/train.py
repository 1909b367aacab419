"""Base training, fast CPU path: a frozen backbone, cached pooled features, and a trained head.

The head is the embedding layer (1280 -> D, or none for D = 0), the L2 normalization and the cosine
classifier with its learned scale (the paper's Sec. 4.1). Each epoch picks one random view per image
from the cached views (the centre crop and random crops/flips), so augmentation costs nothing.

Epochs are chosen by a pseudo-novel check, not by base accuracy: a fifth of the base classes is held
out, the head is trained on the rest, and after each epoch the held-out classes are imprinted from 1
and 5 shots and scored among all classes. Longer training keeps base accuracy flat but can hurt new
classes; this picks the epoch that serves new classes best, then trains on all base classes for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .model import CosineClassifier, l2_normalize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadOptions:
    """dim: embedding size (0: the pooled features, only the classifier is trained). lr: RMSProp step for
    the new layers (the paper: 10x the pretrained layers' 1e-4). max_epochs bounds the search; epochs
    (if set) skips it."""

    dim: int = 1280
    lr: float = 1e-3
    batch: int = 128
    max_epochs: int = 30
    epochs: int | None = None
    weight_decay: float = 1e-4
    scale_init: float = 10.0
    seed: int = 0
    check_every: int = 1

    def __post_init__(self) -> None:
        if self.dim < 0:
            raise ValueError(f"dim must be >= 0, got {self.dim}")
        if self.max_epochs < 1 or (self.epochs is not None and self.epochs < 0):
            raise ValueError("max_epochs must be >= 1 and epochs >= 0")
        if not self.lr > 0 or self.batch < 1:
            raise ValueError("lr must be positive and batch >= 1")


class Head(nn.Module):
    """pooled features (N, F) -> unit embeddings (N, D) -> logits (N, K)."""

    def __init__(self, features: int, dim: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.embed = nn.Linear(features, dim) if dim else None
        self.classifier = CosineClassifier(num_classes, dim or features, scale)

    def embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.embed(pooled) if self.embed is not None else pooled)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedding(pooled))


def _fit(feats: np.ndarray, labels: np.ndarray, num_classes: int, opt: HeadOptions, epochs: int,
         on_epoch=None) -> Head:
    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)
    head = Head(feats.shape[2], opt.dim, num_classes, opt.scale_init)
    # The paper's optimizer: RMSProp with momentum 0.9, decayed x0.94 every 4 epochs.
    optim = torch.optim.RMSprop(head.parameters(), lr=opt.lr, momentum=0.9, weight_decay=opt.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=4, gamma=0.94)
    y_all = torch.from_numpy(labels.astype(np.int64))
    for epoch in range(epochs):
        head.train()
        order = rng.permutation(len(labels))
        view = rng.integers(0, feats.shape[1], len(labels))
        for i in range(0, len(order), opt.batch):
            idx = order[i : i + opt.batch]
            x = torch.from_numpy(feats[idx, view[idx]].astype(np.float32))
            loss = nn.functional.cross_entropy(head(x), y_all[idx])
            optim.zero_grad()
            loss.backward()
            optim.step()
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, head)
    return head.eval()


def embed_features(head: Head | None, feats: np.ndarray) -> np.ndarray:
    """Unit embeddings float32 (N, D) of pooled features (N, F) through a trained head (None: the
    normalized features themselves)."""
    x = torch.from_numpy(feats.astype(np.float32))
    with torch.no_grad():
        return (head.embedding(x) if head is not None else l2_normalize(x)).numpy()


def pseudo_novel_score(head: nn.Module | None, feats: np.ndarray, labels: np.ndarray, seen: np.ndarray,
                       held: np.ndarray, shots: tuple[int, ...] = (1, 5), draws: int = 3,
                       embed=None) -> float:
    """Mean all-class top-1 when the `held` classes are imprinted from n shots beside the imprinted rows of
    the `seen` classes; test images are the held classes' remaining images and the seen classes' last
    3 images (held out of training by the caller). feats (N, V, ...): view 0 is used; embed(head, x)
    maps it to unit embeddings (default: a Head on pooled features)."""
    emb = (embed or embed_features)(head, feats[:, 0]) if head is not None else embed_features(None, feats[:, 0])
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


def pseudo_novel_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seen classes, held-out classes (a fifth), training image indices: the seen classes' images but
    their last 3, which are scored as base test images)."""
    rng = np.random.default_rng(seed + 7)
    classes = np.unique(labels)
    held = np.sort(rng.choice(classes, size=max(2, len(classes) // 5), replace=False))
    seen = np.setdiff1d(classes, held)
    train = np.concatenate([np.flatnonzero(labels == c)[:-3] for c in seen])
    return seen, held, train


def choose_epochs(feats: np.ndarray, labels: np.ndarray, opt: HeadOptions, progress=None) -> tuple[int, dict]:
    """Train on 80% of the classes and pick the epoch whose imprinted held-out classes score best."""
    seen, held, train = pseudo_novel_split(labels, opt.seed)
    remap = {c: k for k, c in enumerate(seen)}
    y = np.array([remap[c] for c in labels[train]])
    history = {0: pseudo_novel_score(None, feats, labels, seen, held)}

    def on_epoch(epoch: int, head: Head) -> None:
        if epoch % opt.check_every == 0:
            history[epoch] = pseudo_novel_score(head, feats, labels, seen, held)
            if progress:
                progress(epoch, history[epoch])

    _fit(feats[train], y, len(seen), opt, opt.max_epochs, on_epoch)
    best = max(history, key=lambda e: (round(history[e], 4), -e))
    return best, history


def train_head(feats: np.ndarray, labels: np.ndarray, num_classes: int, opt: HeadOptions,
               progress=None) -> tuple[Head | None, dict]:
    """The fast path: (the trained head, or None when 0 epochs win; a report with the search history).

    feats float16/32 (N, V, F) pooled features, view 0 the centre crop; labels int (N,) in [0, num_classes).
    """
    report: dict = {}
    epochs = opt.epochs
    if epochs is None:
        epochs, history = choose_epochs(feats, labels, opt, progress)
        report["pseudo_novel_history"] = {int(k): round(v, 4) for k, v in history.items()}
    report["epochs"] = int(epochs)
    if epochs == 0:
        return None, report
    head = _fit(feats, labels, num_classes, opt, epochs)
    emb = embed_features(head, feats[:, 0])
    with torch.no_grad():
        pred = head.classifier(torch.from_numpy(emb)).argmax(1).numpy()
    report["train_top1"] = float((pred == labels).mean())
    report["scale"] = float(head.classifier.scale.detach())
    return head, report
