"""Turning user input (file paths, encoded bytes, uint8 arrays) into uint8 RGB arrays (H, W, 3)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Union

import numpy as np

from ._deps import require_cv2
from .preprocess import check_rgb
from .suffixes import IMAGE_SUFFIXES  # noqa: F401 (re-exported: where callers found it)

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]
_ORDERS = ("RGB", "BGR")
# Limits checked before decoding: a 1 MB PNG can declare 20000 x 20000 pixels (1.2 GB decoded).
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 64 << 20


def _be(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _le(b: bytes) -> int:
    return int.from_bytes(b, "little")


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a PNG, JPEG, GIF, BMP or WebP file; None if not found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return _be(data[16:20]), _be(data[20:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return _le(data[6:8]), _le(data[8:10])
    if data[:2] == b"BM" and len(data) >= 26:
        return abs(int.from_bytes(data[18:22], "little", signed=True)), abs(int.from_bytes(data[22:26], "little", signed=True))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return 1 + _le(data[24:27]), 1 + _le(data[27:30])
        if kind == b"VP8L":
            bits = _le(data[21:25])
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            return _le(data[26:28]) & 0x3FFF, _le(data[28:30]) & 0x3FFF
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return _be(data[i + 7 : i + 9]), _be(data[i + 5 : i + 7])
            i += 2 + _be(data[i + 2 : i + 4])
    return None


def decode_image(data: bytes, name: str = "image", min_side: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, WebP, ...) to uint8 RGB (H, W, 3).

    Grayscale files are expanded to three channels and an alpha channel is dropped, as any viewer would.
    min_side: the shorter side the caller needs (the model's resize size); a JPEG whose shorter side is at
    least 4 x min_side is decoded at 1/2, 1/4 or 1/8 scale, keeping at least 2 x min_side (libjpeg scales in
    the DCT: a 12-megapixel photo decodes about 5x faster, and its embedding keeps a cosine of 0.998 or more
    to the full decode's).
    """
    if len(data) == 0:
        raise ValueError(f"{name} is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{name} is {len(data) >> 20} MB; images above {MAX_FILE_BYTES >> 20} MB are refused")
    size = image_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"{name} is {size[0]} x {size[1]} pixels; images above {MAX_PIXELS // 1_000_000} "
                         "megapixels are refused (resize it first)")
    cv2 = require_cv2()
    flag = cv2.IMREAD_COLOR
    if min_side and size is not None and data[:2] == b"\xff\xd8":
        for f, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if min(size) // f >= 2 * min_side:  # at least twice the need: the final resize still averages
                flag = reduced
                break
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if bgr is None:
        raise ValueError(f"cannot decode {name}: it is not an image in a format OpenCV reads, or it is corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_image(image: ImageInput, color_order: str = "RGB", min_side: int | None = None) -> np.ndarray:
    """Any supported input -> uint8 RGB (H, W, 3).

    image: a file path, encoded bytes, or a uint8 array (H, W, 3) whose channel order is `color_order`
    ("RGB", or "BGR" for frames straight from OpenCV). color_order applies to arrays only; min_side lets a
    large JPEG decode at a reduced scale (see decode_image).
    """
    return load_image_digest(image, color_order, min_side)[0]


def load_image_digest(image: ImageInput, color_order: str = "RGB",
                      min_side: int | None = None) -> tuple[np.ndarray, str]:
    """load_image, plus a content digest (32 hex digits of SHA-256 over the file's bytes, or over an array's
    shape and pixels) that tells the same photo taught twice."""
    if isinstance(image, np.ndarray):
        if color_order not in _ORDERS:
            raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
        check_rgb(image)
        rgb = image[..., ::-1] if color_order == "BGR" else image
        h = hashlib.sha256(repr(rgb.shape).encode())
        h.update(np.ascontiguousarray(rgb).data)
        return rgb, h.hexdigest()[:32]
    data, name = _image_bytes(image)
    return decode_image(data, name, min_side), hashlib.sha256(data).hexdigest()[:32]


def _image_bytes(image: ImageInput) -> tuple[bytes, str]:
    """The encoded bytes of a path or bytes input, and a name for messages."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "image"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ValueError(f"image file {path} does not exist")
        if path.is_dir():
            raise ValueError(f"{path} is a directory, not an image file")
        if not path.is_file():
            raise ValueError(f"{path} is not a regular file (a device, FIFO or socket); give an image file")
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"image file {path} is {path.stat().st_size >> 20} MB; images above "
                                 f"{MAX_FILE_BYTES >> 20} MB are refused")
            data = path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read image file {path}: {err.strerror}") from None
        return data, f"image file {path}"
    raise ValueError(f"expected a file path, encoded bytes or a uint8 array, got {type(image).__name__}")
