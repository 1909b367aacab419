"""Turning user input (file paths, encoded bytes, uint8 arrays) into uint8 RGB arrays (H, W, 3)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from ._deps import require_cv2
from .preprocess import check_rgb

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]
_ORDERS = ("RGB", "BGR")


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, WebP, ...) to uint8 RGB (H, W, 3).

    Grayscale files are expanded to three channels and an alpha channel is dropped, as any viewer would.
    """
    if len(data) == 0:
        raise ValueError(f"{name} is empty (0 bytes)")
    cv2 = require_cv2()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode {name}: it is not an image in a format OpenCV reads, or it is corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_image(image: ImageInput, color_order: str = "RGB") -> np.ndarray:
    """Any supported input -> uint8 RGB (H, W, 3).

    image: a file path, encoded bytes, or a uint8 array (H, W, 3) whose channel order is `color_order`
    ("RGB", or "BGR" for frames straight from OpenCV). color_order applies to arrays only.
    """
    if isinstance(image, np.ndarray):
        if color_order not in _ORDERS:
            raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
        check_rgb(image)
        return image[..., ::-1] if color_order == "BGR" else image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image))
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ValueError(f"image file {path} does not exist")
        if path.is_dir():
            raise ValueError(f"{path} is a directory, not an image file")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read image file {path}: {err.strerror}") from None
        return decode_image(data, f"image file {path}")
    raise ValueError(f"expected a file path, encoded bytes or a uint8 array, got {type(image).__name__}")
