"""A simulated camera over real photos: pans, zooms, lighting changes and sensor noise.

Used by `imprint demo` on machines without a webcam. The photos are scikit-image's bundled samples, so
nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Objects to teach, and an empty scene (a gravel floor) that should come out "unknown".
OBJECTS = ("chelsea", "coffee", "rocket", "astronaut")
EMPTY = "gravel"
NAMES = {"chelsea": "cat", "coffee": "coffee cup", "rocket": "rocket", "astronaut": "astronaut"}


def sample_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as uint8 RGB (H, W, 3)."""
    from imprinting.export.calibration import sample_photos  # numpy and OpenCV only: no torch

    return sample_photos((name,))[0]


@dataclass(frozen=True)
class View:
    """One camera pose and exposure: the crop window (fraction of the shorter side), its centre offset
    as a fraction of the free space, a brightness gain and the noise level."""

    zoom: float
    dx: float
    dy: float
    gain: float
    noise: float


def random_view(rng: np.random.Generator) -> View:
    return View(zoom=rng.uniform(0.6, 0.95), dx=rng.uniform(-1, 1), dy=rng.uniform(-1, 1),
                gain=rng.uniform(0.7, 1.3), noise=rng.uniform(2, 10))


def render(photo: np.ndarray, view: View, rng: np.random.Generator, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """One 640x480 frame (uint8 RGB) of `photo` seen from `view`, with fresh sensor noise."""
    import cv2

    h, w = photo.shape[:2]
    out_w, out_h = size
    aspect = out_w / out_h
    ch = int(min(h, w / aspect) * view.zoom)
    cw = int(ch * aspect)
    top = int((h - ch) / 2 * (1 + view.dy))
    left = int((w - cw) / 2 * (1 + view.dx))
    crop = photo[max(top, 0) : max(top, 0) + ch, max(left, 0) : max(left, 0) + cw]
    frame = cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR)
    # Gain and Gaussian sensor noise in OpenCV's saturating uint8 arithmetic: a few ms, not tens.
    noise = np.empty_like(frame, dtype=np.int16)
    cv2.setRNGSeed(int(rng.integers(2**31)))
    cv2.randn(noise, (0, 0, 0), (view.noise,) * 3)  # per-channel mean and sigma
    return cv2.add(cv2.convertScaleAbs(frame, alpha=view.gain), noise, dtype=cv2.CV_8U)


def pan(a: View, b: View, t: float) -> View:
    """The view a fraction t of the way from a to b (a slow camera move)."""
    return View(*(x + (y - x) * t for x, y in zip(vars(a).values(), vars(b).values())))
