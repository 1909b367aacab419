"""The paper's model: extractor phi (backbone, average pool, linear embedding, L2 norm) and the cosine
classifier (unit-length rows, no bias, one learned scale s), with imprinting in PyTorch.

Shapes: images float32 (N, 3, S, S) normalized as the bundle's PreprocessSpec says; pooled backbone
features (N, 1280); embeddings (N, D) unit length; logits (N, K) = s * cos(phi(x), w_c).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet_lite import efficientnet_lite0

log = logging.getLogger(__name__)

BACKBONES = ("efficientnet_lite0",)
NORM_EPS = 1e-12


def l2_normalize(f: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Rows of f (N, D) scaled to unit length.

    Written as f * rsqrt(clamp(sum(f*f))) rather than F.normalize: F.normalize exports as ReduceL2 + Div
    with an Expand that breaks onnxruntime's quantization pre-processing and some TFLite converters.
    """
    return f * torch.rsqrt(torch.clamp((f * f).sum(1, keepdim=True), min=eps))


@dataclass(frozen=True)
class ExtractorConfig:
    """What an extractor is made of. embedding_dim 0: the pooled 1280-d features, no projection."""

    backbone: str = "efficientnet_lite0"
    embedding_dim: int = 0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            import difflib

            near = difflib.get_close_matches(self.backbone, BACKBONES, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"unknown backbone {self.backbone!r}; known: {list(BACKBONES)}{hint}")
        if self.embedding_dim < 0:
            raise ValueError(f"embedding_dim must be >= 0 (0 = pooled features), got {self.embedding_dim}")


class ImprintExtractor(nn.Module):
    """phi: float32 images (N, 3, S, S) -> unit embeddings (N, D).

    `pooled(x)` gives the backbone's pooled features (N, 1280) and `head(p)` maps them to embeddings, so
    that the fast training path can train the head on cached pooled features.
    """

    def __init__(
        self, config: ExtractorConfig = ExtractorConfig(), pretrained: bool = True, backbone: nn.Module | None = None
    ) -> None:
        """backbone: a module with `features(x)` -> (N, C, h, w) and `num_features` == C, used instead of
        the config's (tests use a tiny one); the config's name then only labels the bundle."""
        super().__init__()
        self.config = config
        if backbone is None:
            backbone = efficientnet_lite0(pretrained=pretrained)
            backbone._fc = nn.Identity()  # the ImageNet classifier is not part of phi
        self.backbone = backbone
        width = self.backbone.num_features
        self.embed = nn.Linear(width, config.embedding_dim) if config.embedding_dim else None
        self.embedding_dim = config.embedding_dim or width

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive_avg_pool2d rather than mean((2, 3)): in a channels-last TFLite graph a mean over named
        # NCHW axes leaves a transpose of the last feature map behind.
        return F.adaptive_avg_pool2d(self.backbone.features(x), 1).flatten(1)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        f = self.embed(pooled) if self.embed is not None else pooled
        return l2_normalize(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x))


class ChannelsLast(nn.Module):
    """Wraps a module that takes (N, 3, S, S) so that it takes (N, S, S, 3).

    TFLite kernels are NHWC; with the permute at the graph input the converter can fold it into the first
    convolution instead of leaving transposes around every layer.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.permute(0, 3, 1, 2))


class CosineClassifier(nn.Module):
    """logits (N, K) = s * <e, w_c / ||w_c||> for unit embeddings e (N, D). No bias, one learned scale s."""

    def __init__(self, num_classes: int, dim: int, scale: float = 10.0) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise ValueError(f"a classifier needs >= 1 class and dim >= 1, got {num_classes} x {dim}")
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def unit_weight(self) -> torch.Tensor:
        """The templates, unit rows (K, D)."""
        return l2_normalize(self.weight)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.scale * (e @ self.unit_weight().t())

    @torch.no_grad()
    def imprint_(self, rows: torch.Tensor | list[int], embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Set weight[rows[j]] to the normalized mean of the unit embeddings (N, D) whose label is j.

        labels int (N,) index into `rows`; each row gets at least one embedding or ValueError.
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        self.weight[rows] = imprint_weights(embeddings, labels, len(rows)).to(self.weight)

    @torch.no_grad()
    def randomize_(self, rows: torch.Tensor | list[int], seed: int = 0) -> None:
        """The Rand+FT baseline: Xavier-uniform rows (as a fresh layer of this shape would get)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        g = torch.Generator().manual_seed(seed)
        k, d = self.weight.shape
        bound = float(np.sqrt(6.0 / (k + d)))
        self.weight[rows] = (torch.rand(len(rows), d, generator=g) * 2 - 1).to(self.weight) * bound


def imprint_weights(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Imprinted templates (num_classes, D): w_c = normalize(sum of the normalized embeddings of class c).

    embeddings float (N, D), labels int (N,) in [0, num_classes). A class without any embedding is an error.
    """
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"embeddings (N, D) and labels (N,) expected, got {tuple(embeddings.shape)} and {tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    sums = torch.zeros(num_classes, embeddings.shape[1], dtype=embeddings.dtype)
    sums.index_add_(0, labels, l2_normalize(embeddings))
    counts = torch.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"cannot imprint classes {missing[:10]}: they have no embeddings")
    return l2_normalize(sums)


def state_fingerprint(module: nn.Module) -> str:
    """sha256 of a module's fp32 state (names, shapes and bytes, in state_dict order).

    It names the embedding space: every file exported from the same weights carries it, and a class store
    made with another extractor is refused by it. BatchNorm's batch counters do not change outputs and are
    left out.
    """
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        a = t.detach().cpu().contiguous().float().numpy()
        h.update(name.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()
