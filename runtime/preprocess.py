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
# "area": INTER_AREA when shrinking, bilinear when enlarging; "linear": always bilinear (faster).
_INTERPOLATIONS = ("area", "linear", "cubic")


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
    interpolation: str = "area"
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
        # Inputs are scaled to [0, 1] first: a mean outside [0, 1] or a std outside (0.001, 10] is a broken
        # manifest, not a model (NaN fails every comparison, so `not ... <=` also refuses it).
        if not all(0.0 <= m <= 1.0 for m in self.mean):
            raise ValueError(f"mean must be in [0, 1] per channel (inputs are scaled to [0, 1]), got {self.mean!r}")
        if not all(1e-3 < v <= 10.0 for v in self.std):
            raise ValueError(f"std must be in (0.001, 10] per channel, got {self.std!r}")
        if self.resize_size > 4 * self.input_size:
            raise ValueError(f"resize_size ({self.resize_size}) must be at most 4 x input_size ({self.input_size})")

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


def _cv2_flag(spec: PreprocessSpec, shrinking: bool) -> int:
    cv2 = require_cv2()
    if spec.interpolation == "cubic":
        return cv2.INTER_CUBIC
    # INTER_AREA avoids aliasing when shrinking a camera frame; when enlarging it equals bilinear.
    if spec.interpolation == "area" and shrinking:
        return cv2.INTER_AREA
    return cv2.INTER_LINEAR


def resize_for_crop(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize a uint8 image (H, W, 3) as the spec says, before any crop (for training-time random crops).

    Returns uint8 (h, w, 3) with min(h, w) == spec.resize_size ("shorter") or h == w == resize_size.
    """
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
    flag = _cv2_flag(spec, new_h * new_w < h * w)
    return require_cv2().resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=flag)


def center_box(h: int, w: int, spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the source region that resize-then-centre-crop would keep.

    Cropping this region first and resizing it once to input_size is the same geometry as resizing the
    whole image and cropping, at a fraction of the cost for a camera frame (and exact for a 256x256
    image with the paper's 256/224 setting: a plain 224 crop).
    """
    s, r = spec.input_size, spec.resize_size
    if spec.resize_mode == "stretch":
        ch, cw = max(1, round(h * s / r)), max(1, round(w * s / r))
    else:
        ch = cw = max(1, round(min(h, w) * s / r))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def capture_size(spec: PreprocessSpec) -> tuple[int, int]:
    """(width, height) to ask a camera for: the smallest landscape frame whose centre box is input_size
    high, so a frame needs no resize at all (shorter side = resize_size; width 4:3, rounded up to a multiple
    of 32, which camera ISPs and V4L2 drivers accept). 352 x 256 for the paper's 256/224."""
    r = spec.resize_size
    width = -(-4 * r // 3)  # ceil(4r / 3)
    return -(-width // 32) * 32, r


def normalize(crops: np.ndarray, spec: PreprocessSpec, layout: str = "NCHW", color_order: str = "RGB") -> np.ndarray:
    """Scale uint8 crops (N, S, S, 3) to the model input, float32 (N, 3, S, S) or (N, S, S, 3) in RGB.

    color_order="BGR" takes crops straight from OpenCV; the channel swap costs nothing here.
    """
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    if color_order not in ("RGB", "BGR"):
        raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
    # One fused affine map per channel: (x / 255 - mean) / std == x * a + b.
    std = np.asarray(spec.std, np.float32)
    a = (1.0 / (255.0 * std)).astype(np.float32)
    b = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32)
    src = (2, 1, 0) if color_order == "BGR" else (0, 1, 2)
    n, hh, ww = crops.shape[:3]
    if layout == "NHWC":
        x = crops[..., list(src)].astype(np.float32)
        x *= a
        x += b
        return x
    out = np.empty((n, 3, hh, ww), np.float32)
    for c in range(3):  # planar writes: no transpose pass
        np.multiply(crops[..., src[c]], a[c], out=out[:, c], dtype=np.float32)
        out[:, c] += b[c]
    return out


def centre_crop_resized(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The uint8 input_size x input_size crop of one image (H, W, 3) that the model sees (any colour order)."""
    check_rgb(image)
    s = spec.input_size
    top, left, ch, cw = center_box(image.shape[0], image.shape[1], spec)
    region = image[top : top + ch, left : left + cw]
    if (ch, cw) == (s, s):
        return region
    flag = _cv2_flag(spec, ch * cw > s * s)
    return require_cv2().resize(np.ascontiguousarray(region), (s, s), interpolation=flag)


def preprocess(
    images: list[np.ndarray] | np.ndarray, spec: PreprocessSpec, layout: str = "NCHW", color_order: str = "RGB"
) -> np.ndarray:
    """The shared preprocessing: uint8 images (H, W, 3) -> float32 batch (N, 3, S, S) or (N, S, S, 3), RGB.

    `images` is one image (H, W, 3), a batch (N, H, W, 3) or a list of images of any sizes, in
    `color_order` ("RGB", or "BGR" for OpenCV frames).
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    crops = np.empty((len(images), spec.input_size, spec.input_size, 3), np.uint8)
    if len(crops) == 0:
        raise ValueError("no images to preprocess")
    for i, im in enumerate(images):
        crops[i] = centre_crop_resized(im, spec)
    return normalize(crops, spec, layout, color_order)


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
