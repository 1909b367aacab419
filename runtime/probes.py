"""Probes: a few inputs a bundle carries with their PyTorch fp32 embeddings, so that a device can check that
an extractor file computes the right thing with the engine it meets (selfcheck.py).

File (`probes.npz`, read without pickle; see docs/formats.md): `crops.npy` uint8 (N, S, S, 3), the RGB
crops at input size that the model sees (what `preprocess.centre_crop_resized` returns; `preprocess.normalize`
turns them into any file's input exactly), and `embeddings.npy` float32 (N, D), PyTorch fp32's output for
them. Stored compressed: 8 Lite0 probes take about 1 MB.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write

_MEMBERS = ("crops.npy", "embeddings.npy")
MAX_PROBES = 64


def write_probes(path: str | os.PathLike[str], crops: np.ndarray, embeddings: np.ndarray) -> None:
    """Write uint8 crops (N, S, S, 3) and float32 embeddings (N, D), compressed (temp file + rename)."""
    c = np.ascontiguousarray(crops)
    e = np.asarray(embeddings, np.float32)
    if c.dtype != np.uint8 or c.ndim != 4 or c.shape[3] != 3 or c.shape[1] != c.shape[2]:
        raise ValueError(f"probe crops must be uint8 (N, S, S, 3), got {c.dtype} {c.shape}")
    if e.ndim != 2 or len(e) != len(c) or not 1 <= len(c) <= MAX_PROBES:
        raise ValueError(f"probe embeddings must be (N, D) for the {len(c)} crops (1 to {MAX_PROBES}), got {e.shape}")
    atomic_write(Path(path), lambda f: np.savez_compressed(f, crops=c, embeddings=e))


def read_probes(path: str | os.PathLike[str], input_size: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(crops uint8 (N, S, S, 3), embeddings float32 (N, D)) of a bundle's probes; ValueError with the reason
    when the file is missing, corrupt or does not fit the bundle (S = input_size, D = dim)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"probes {path} do not exist; re-export the bundle")
    try:
        with zipfile.ZipFile(path) as z:
            if sorted(z.namelist()) != sorted(_MEMBERS):
                raise ValueError(f"members {sorted(z.namelist())}, expected {list(_MEMBERS)}")
            if sum(i.file_size for i in z.infolist()) > MAX_PROBES * (input_size ** 2 * 3 + dim * 4) + 4096:
                raise ValueError("members larger than the probes this bundle can hold")
        with np.load(path, allow_pickle=False) as z:
            c, e = z["crops"], z["embeddings"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"probes {path} are corrupt: {err}") from None
    if c.dtype != np.uint8 or c.shape[1:] != (input_size, input_size, 3) or e.dtype != np.float32 \
            or e.shape != (len(c), dim) or len(c) < 1:
        raise ValueError(f"probes {path} hold {c.dtype} {c.shape} and {e.dtype} {e.shape}; this bundle needs uint8 "
                         f"(N, {input_size}, {input_size}, 3) and float32 (N, {dim})")
    if not np.isfinite(e).all():
        raise ValueError(f"probes {path} hold NaN or infinity")
    return c, e
