"""Shared helpers for the export tests: a tiny random-weight backbone that converts in seconds."""

from __future__ import annotations

import torch
from torch import nn

from imprinting.export.efficientnet_lite import SameConv2d


class TinyBackbone(nn.Module):
    """Stem + one inverted-residual-like block + head: (N, 3, S, S) -> (N, 32, S/4, S/4)."""

    num_features = 32

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = SameConv2d(3, 16, 3, 2)
        self.bn0 = nn.BatchNorm2d(16, eps=1e-3)
        self.dw = SameConv2d(16, 16, 3, 2, groups=16)
        self.bn1 = nn.BatchNorm2d(16, eps=1e-3)
        self.head = SameConv2d(16, 32, 1)
        self.bn2 = nn.BatchNorm2d(32, eps=1e-3)
        for bn in (self.bn0, self.bn1, self.bn2):
            # Non-trivial running statistics so that BatchNorm folding is exercised.
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
        self.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.relu6(self.bn0(self.stem(x)))
        x = torch.nn.functional.relu6(self.bn1(self.dw(x)))
        return torch.nn.functional.relu6(self.bn2(self.head(x)))


def tiny_extractor(dim: int = 16, seed: int = 0):
    from imprinting.export.model import ExtractorConfig, ImprintExtractor

    torch.manual_seed(seed)
    return ImprintExtractor(ExtractorConfig(embedding_dim=dim), backbone=TinyBackbone(seed)).eval()
