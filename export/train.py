"""Base training, fast CPU path: a frozen backbone, cached pooled features, and a trained head.

The head is the embedding layer (1280 -> D, or none for D = 0), the L2 normalization and the cosine
classifier with its learned scale (the paper's Sec. 4.1). Each epoch picks one random view per image
from the cached views (the centre crop and random crops/flips), so augmentation costs nothing.

Epochs are chosen by the pseudo-novel check (`optim.search_epochs`), not by base accuracy, then the head
is trained on all base classes for that many epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from .model import CosineClassifier, ImprintExtractor, l2_normalize
from .optim import (OnEpoch, Progress, TrainOptions, classifier_report, paper_optimizer, rounded_history, search_epochs,
                    train_step)


@dataclass(frozen=True)
class HeadOptions(TrainOptions):
    """The fast path's options (see TrainOptions). lr: RMSProp step for the new layers (the paper: 10x the
    pretrained layers' 1e-4). check_every: score the search every this many epochs."""

    check_every: int = 1


@dataclass(frozen=True)
class TrainedBase:
    """A finished base training, what `imprint train` writes into its checkpoint.

    model: the trained extractor. rows: the trained classifier's rows float32 (K, D), or None where none
    were trained (0 epochs won the search). scale: the classifier's s. embeddings: unit embeddings float32
    (N, D) of the training images' centre views; labels: int (N,). epochs and lr as trained;
    feature_seconds: time spent computing the cached backbone outputs. report: the run's other figures
    (search history, training top-1, trained scale)."""

    model: ImprintExtractor
    rows: torch.Tensor | None
    scale: float
    embeddings: np.ndarray
    labels: np.ndarray
    epochs: int
    lr: float
    feature_seconds: float
    report: dict = field(default_factory=dict)


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
         on_epoch: OnEpoch | None = None) -> Head:
    """A fresh head trained on feats (N, V, F) (a random view per image and epoch), labels int (N,)."""
    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)
    head = Head(feats.shape[2], opt.dim, num_classes, opt.scale_init)
    optim, sched = paper_optimizer(head.parameters(), opt.lr, opt.weight_decay)
    y_all = torch.from_numpy(labels.astype(np.int64))
    for epoch in range(epochs):
        head.train()
        order = rng.permutation(len(labels))
        view = rng.integers(0, feats.shape[1], len(labels))
        for i in range(0, len(order), opt.batch):
            idx = order[i : i + opt.batch]
            train_step(head, optim, torch.from_numpy(feats[idx, view[idx]].astype(np.float32)), y_all[idx])
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


def train_head(feats: np.ndarray, labels: np.ndarray, num_classes: int, opt: HeadOptions,
               progress: Progress | None = None) -> tuple[Head | None, dict]:
    """The fast path: (the trained head, or None when 0 epochs win; a report with the search history).

    feats float16/32 (N, V, F) pooled features, view 0 the centre crop; labels int (N,) in [0, num_classes).
    """
    report: dict = {}
    epochs = opt.epochs
    if epochs is None:
        epochs, history = search_epochs(
            labels, opt.max_epochs,
            fit=lambda rows, y, k, n, on_epoch: _fit(feats[rows], y, k, opt, n, on_epoch),
            embed=lambda head: embed_features(head, feats[:, 0]),
            seed=opt.seed, check_every=opt.check_every, progress=progress)
        report["pseudo_novel_history"] = rounded_history(history)
    report["epochs"] = int(epochs)
    if epochs == 0:
        return None, report
    head = _fit(feats, labels, num_classes, opt, epochs)
    report.update(classifier_report(head.classifier, embed_features(head, feats[:, 0]), labels))
    return head, report
