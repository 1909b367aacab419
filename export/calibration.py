"""Images for int8 calibration and parity checks, offline: a user's folder or scikit-image's sample photos,
multiplied by random crops, flips and colour jitter.

Every image returned is uint8 RGB (H, W, 3); callers turn them into model input with the shared
`imprinting.runtime.preprocess.preprocess`, so calibration sees exactly what the device will see.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from imprinting.runtime.images import IMAGE_SUFFIXES, load_image

log = logging.getLogger(__name__)

# scikit-image ships these inside its wheel (no download); grayscale ones are expanded to RGB.
SAMPLE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "brick", "camera", "coins", "grass", "gravel", "moon", "page", "text", "clock", "logo", "microaneurysms",
)
# Held out of calibration and used only for parity checks.
PARITY_PHOTOS = ("coffee", "rocket", "camera", "retina")


def sample_photos(names: tuple[str, ...] = SAMPLE_PHOTOS) -> list[np.ndarray]:
    """scikit-image's bundled sample images as uint8 RGB (H, W, 3), in `names` order."""
    try:
        import skimage.data
    except ImportError as err:
        raise ImportError(
            f"default calibration images come from scikit-image; install it (pip install scikit-image) or pass "
            f"--calib-dir with your own photos ({err})"
        ) from None
    out = []
    for name in names:
        im = np.asarray(getattr(skimage.data, name)())
        if im.dtype != np.uint8:
            im = np.clip(im, 0, 255).astype(np.uint8)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(im[..., :3]))
    return out


def load_image_dir(path: str | os.PathLike[str], limit: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Decode the images under `path` (recursively), at most `limit` of them chosen at random with `seed`.

    Unreadable files are skipped and counted in the log; a directory without any image is a ValueError.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"calibration directory {root} does not exist or is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    if limit is not None and len(files) > limit:
        pick = np.random.default_rng(seed).choice(len(files), limit, replace=False)
        files = [files[i] for i in sorted(pick)]
    images, bad = [], 0
    for f in files:
        try:
            images.append(load_image(f))
        except ValueError as err:
            bad += 1
            log.debug("skipping %s: %s", f, err)
    if bad:
        log.warning("skipped %d unreadable image(s) under %s", bad, root)
    if not images:
        raise ValueError(f"none of the {len(files)} image files under {root} could be decoded")
    return images


def augment(image: np.ndarray, rng: np.random.Generator, min_area: float = 0.2) -> np.ndarray:
    """A random view of a uint8 RGB image (H, W, 3): crop of 20-100% of the area with aspect 3/4-4/3,
    horizontal flip half the time, brightness/contrast/saturation jitter of up to 30%. Returns uint8."""
    h, w = image.shape[:2]
    area = rng.uniform(min_area, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(h, max(8, round(np.sqrt(area / aspect)))))
    cw = int(min(w, max(8, round(np.sqrt(area * aspect)))))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    x = image[top : top + ch, left : left + cw].astype(np.float32)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * rng.uniform(0.7, 1.3)  # saturation
    x = x.mean() + (x - x.mean()) * rng.uniform(0.7, 1.3)  # contrast
    x = x * rng.uniform(0.7, 1.3)  # brightness
    return np.ascontiguousarray(np.clip(x, 0, 255).astype(np.uint8))


def augmented_views(images: list[np.ndarray], count: int, seed: int) -> list[np.ndarray]:
    """`count` images: the originals first (up to count), then random views cycling through them."""
    if not images:
        raise ValueError("no source images to draw views from")
    rng = np.random.default_rng(seed)
    out = list(images[:count])
    i = 0
    while len(out) < count:
        out.append(augment(images[i % len(images)], rng))
        i += 1
    return out


def default_image_sets(
    calib_count: int = 200, parity_count: int = 48, calib_dir: str | os.PathLike[str] | None = None, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration images, parity images), disjoint at the source level where possible.

    With `calib_dir`, a tenth of its images (at least one) are held out for parity; otherwise the sample
    photos in PARITY_PHOTOS are. Both lists are expanded with random views to the requested counts.
    """
    if calib_dir is not None:
        sources = load_image_dir(calib_dir, limit=max(calib_count, 2) + parity_count, seed=seed)
        n_hold = max(1, len(sources) // 10) if len(sources) > 1 else 0
        parity_src, calib_src = (sources[:n_hold], sources[n_hold:]) if n_hold else (sources, sources)
    else:
        calib_src = sample_photos(tuple(n for n in SAMPLE_PHOTOS if n not in PARITY_PHOTOS))
        parity_src = sample_photos(PARITY_PHOTOS)
    return augmented_views(calib_src, calib_count, seed), augmented_views(parity_src, parity_count, seed + 1)
