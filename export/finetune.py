"""Fine-tuning after imprinting (the paper's Imprinting+FT), its Rand+FT baseline and AllClassJoint, on the
fast CPU path: the backbone stays frozen, its cached pooled features feed the head.

Novel classes are oversampled so that every class is sampled uniformly in each mini-batch (Sec. 6.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from .model import imprint_weights
from .optim import paper_optimizer, train_step
from .train import Head


@dataclass(frozen=True)
class FinetuneOptions:
    """epochs over as many samples as there are base images; lr for the head (RMSProp, momentum 0.9)."""

    epochs: int = 10
    lr: float = 1e-4
    batch: int = 128
    seed: int = 0


def _balanced_batches(labels: np.ndarray, num_classes: int, steps: int, batch: int, rng: np.random.Generator):
    # A WeightedRandomSampler (weights 1 / class size) samples alike but from torch's generator: other
    # batches, so other results for the same seed than the published ones; this keeps the numpy stream.
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    for _ in range(steps):
        cls = rng.integers(0, num_classes, batch)
        yield np.array([by_class[c][rng.integers(len(by_class[c]))] for c in cls])


def train_balanced(model: nn.Module, feats: np.ndarray, labels: np.ndarray, num_classes: int, opt: FinetuneOptions,
                   samples_per_epoch: int, params: Iterable[nn.Parameter] | None = None,
                   new_params: Iterable[nn.Parameter] | None = None) -> nn.Module:
    """Class-balanced training of `model` on feats (N, V, ...) (a random view per sample), labels int (N,):
    every batch draws its classes uniformly, then an image of each (the paper's oversampling of novel
    classes). params (default: all of the model's) move at opt.lr, new_params (if given) at 10x."""
    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)
    optim, sched = paper_optimizer(model.parameters() if params is None else params, opt.lr, new_params=new_params)
    y = torch.from_numpy(labels.astype(np.int64))
    steps = max(1, samples_per_epoch // opt.batch)
    for _ in range(opt.epochs):
        model.train()
        for idx in _balanced_batches(labels, num_classes, steps, opt.batch, rng):
            view = rng.integers(0, feats.shape[1], len(idx))
            train_step(model, optim, torch.from_numpy(feats[idx, view].astype(np.float32)), y[idx])
        sched.step()
    return model.eval()


def extend_head(head: Head, novel_feats: np.ndarray, novel_labels: np.ndarray, num_novel: int, init: str,
                seed: int = 0) -> Head:
    """A copy of `head` with num_novel more classifier rows: imprinted from the novel shots' centre-crop
    embeddings (init="imprint") or Xavier-uniform random (init="random")."""
    base = head.classifier.weight.shape[0]
    features = novel_feats.shape[2]
    dim = head.classifier.weight.shape[1]
    new = Head(features, dim if head.embed is not None else 0, base + num_novel, float(head.classifier.scale.detach()))
    new.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("classifier.weight")}, strict=False)
    with torch.no_grad():
        new.classifier.weight[:base] = head.classifier.weight
        new.classifier.scale.copy_(head.classifier.scale)
        rows = list(range(base, base + num_novel))
        if init == "imprint":
            e = new.embedding(torch.from_numpy(novel_feats[:, 0].astype(np.float32)))
            new.classifier.weight[rows] = imprint_weights(e, torch.from_numpy(novel_labels - base), num_novel)
        elif init == "random":
            new.classifier.randomize_(rows, seed)
        else:
            raise ValueError(f"init must be 'imprint' or 'random', got {init!r}")
    return new


def finetune(head: Head, feats: np.ndarray, labels: np.ndarray, num_classes: int, opt: FinetuneOptions,
             samples_per_epoch: int) -> Head:
    """Fine-tune every part of the head on base + novel features with class-balanced sampling."""
    return train_balanced(head, feats, labels, num_classes, opt, samples_per_epoch)


class JointClassifier(nn.Module):
    """AllClassJoint: a plain linear embedding and a linear classifier with bias, no normalization."""

    def __init__(self, features: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, dim), nn.Linear(dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def all_class_joint(feats: np.ndarray, labels: np.ndarray, num_classes: int, dim: int, opt: FinetuneOptions,
                    samples_per_epoch: int) -> JointClassifier:
    """Train all classes jointly from scratch (no separate low-shot phase)."""
    torch.manual_seed(opt.seed)
    model = JointClassifier(feats.shape[2], dim, num_classes)
    return train_balanced(model, feats, labels, num_classes, opt, samples_per_epoch)
