"""The one preprocessing function shared by the runtime, evaluation and int8 calibration.

Everything about it comes from the bundle manifest (`PreprocessSpec`), so the numbers a user sees on a
device are the numbers the benchmarks report. Images enter as uint8 RGB arrays (H, W, 3); decoding
files and bytes and handling colour order lives in `images.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._deps import require_cv2

_RESIZE_MODES = ("shorter", "stretch")
_INTERPOLATIONS = ("linear", "area", "cubic")


@dataclass(frozen=True)
class PreprocessSpec:
    """How an RGB uint8 image becomes the extractor's input.

    The image is resized (`resize_mode="shorter"`: its shorter side to `resize_size`, keeping the aspect
    ratio; `"stretch"`: to `resize_size` x `resize_size`), centre-cropped to `input_size` x `input_size`,
    scaled to [0, 1] and normalized per channel as `(x - mean) / std`. The paper: 256, 224, [-1, 1].
    """

    input_size: int = 224
    resize_size: int = 256
    resize_mode: str = "shorter"
    interpolation: str = "linear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if not (1 <= self.input_size <= 4096):
            raise ValueError(f"input_size must be in [1, 4096], got {self.input_size}")
        if self.resize_size < self.input_size:
            raise ValueError(
                f"resize_size ({self.resize_size}) must be >= input_size ({self.input_size}): "
                "the centre crop is taken from the resized image"
            )
        if self.resize_mode not in _RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {_RESIZE_MODES}, got {self.resize_mode!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"{name} must have 3 values (R, G, B), got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the bundle manifest."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def resize_for_crop(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize a uint8 RGB image (H, W, 3) as the spec says, before any crop.

    Returns uint8 (h, w, 3) with min(h, w) == spec.resize_size ("shorter") or h == w == resize_size.
    Training-time random crops are taken from this array.
    """
    cv2 = require_cv2()
    h, w = image.shape[:2]
    r = spec.resize_size
    if spec.resize_mode == "stretch":
        new_h, new_w = r, r
    elif h <= w:
        new_h, new_w = r, max(r, round(w * r / h))
    else:
        new_h, new_w = max(r, round(h * r / w)), r
    if (new_h, new_w) == (h, w):
        return image
    # INTER_AREA avoids aliasing when shrinking a camera frame; it is also what a user would pick.
    if spec.interpolation == "area" or (spec.interpolation == "linear" and new_h * new_w < h * w):
        flag = cv2.INTER_AREA
    elif spec.interpolation == "cubic":
        flag = cv2.INTER_CUBIC
    else:
        flag = cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=flag)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Central size x size window of an (H, W, C) array with H, W >= size."""
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def normalize(crops: np.ndarray, spec: PreprocessSpec, layout: str = "NCHW") -> np.ndarray:
    """Scale uint8 crops (N, S, S, 3) RGB to the model input, float32 (N, 3, S, S) or (N, S, S, 3)."""
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    # One fused affine map: (x / 255 - mean) / std == x * a + b.
    a = (1.0 / (255.0 * np.asarray(spec.std, np.float32))).astype(np.float32)
    b = (-np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)).astype(np.float32)
    out = crops.astype(np.float32) * a + b
    if layout == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


def preprocess(images: list[np.ndarray] | np.ndarray, spec: PreprocessSpec, layout: str = "NCHW") -> np.ndarray:
    """The shared preprocessing: uint8 RGB images (H, W, 3) -> float32 batch (N, 3, S, S) or (N, S, S, 3).

    `images` is one image (H, W, 3), a batch (N, H, W, 3) or a list of images of any sizes.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    crops = [center_crop(resize_for_crop(check_rgb(im), spec), spec.input_size) for im in images]
    if not crops:
        raise ValueError("no images to preprocess")
    return normalize(np.stack(crops), spec, layout)


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Validate one decoded image: uint8 (H, W, 3), at least 1 pixel. Returns it unchanged."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy uint8 array (H, W, 3), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 image, got dtype {image.dtype}; convert with "
            "np.clip(x * 255, 0, 255).astype(np.uint8) if it holds floats in [0, 1]"
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise ValueError(
            f"expected a colour image (H, W, 3), got grayscale shape {image.shape}; "
            "convert it with cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)"
        )
    if image.ndim == 3 and image.shape[2] == 4:
        raise ValueError(
            f"expected 3 colour channels, got an alpha channel (shape {image.shape}); "
            "drop it with img[..., :3] or composite it on a background first"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an image of shape (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty (shape {image.shape})")
    return image
