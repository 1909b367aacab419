"""Embeddings of a list of images from an exported extractor, cached on disk (the benchmark's inner loop).

The extractor is run through the runtime (`imprinting.runtime`), so the accuracy reported is the
accuracy of the files users run. Centre crops use the shared preprocessing; augmented views are
random crops of the resized image plus horizontal flips (the paper's Imprinting+Aug).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from imprinting.runtime.bundle import file_sha256
from imprinting.runtime.extractor import Extractor
from imprinting.runtime.images import load_image
from imprinting.runtime.preprocess import PreprocessSpec, normalize, preprocess, resize_for_crop
from imprinting.runtime.atomic import atomic_write_bytes

log = logging.getLogger(__name__)


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="img", leave=False)


def augmented_crops(image: np.ndarray, spec: PreprocessSpec, views: int, rng: np.random.Generator) -> np.ndarray:
    """`views` random input_size crops (with random horizontal flips) of the resized image: uint8 (V, S, S, 3)."""
    big = resize_for_crop(image, spec)
    s = spec.input_size
    out = np.empty((views, s, s, 3), np.uint8)
    for v in range(views):
        top = int(rng.integers(0, big.shape[0] - s + 1))
        left = int(rng.integers(0, big.shape[1] - s + 1))
        crop = big[top : top + s, left : left + s]
        out[v] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


def embed_paths(
    extractor: Extractor,
    spec: PreprocessSpec,
    paths: Sequence[Path],
    *,
    views: int = 0,
    seed: int = 0,
    batch: int = 32,
    desc: str = "embedding",
) -> np.ndarray:
    """Unit embeddings of image files: float32 (N, D) for centre crops, or (N, views, D) for augmented views."""
    rng = np.random.default_rng(seed)
    d = extractor.embedding_dim
    out = np.empty((len(paths), views, d) if views else (len(paths), d), np.float32)
    bar = _progress(len(paths), desc)
    for i in range(0, len(paths), batch):
        imgs = [load_image(p) for p in paths[i : i + batch]]
        if views:
            crops = np.concatenate([augmented_crops(im, spec, views, rng) for im in imgs])
            x = normalize(crops, spec, extractor.layout)
        else:
            x = preprocess(imgs, spec, extractor.layout)
        e = extractor.run(x)
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        out[i : i + len(imgs)] = e.reshape(len(imgs), views, d) if views else e
        if bar is not None:
            bar.update(len(imgs))
    if bar is not None:
        bar.close()
    return out


def cached_embeddings(
    cache_dir: str | os.PathLike[str] | None,
    extractor: Extractor,
    spec: PreprocessSpec,
    paths: Sequence[Path],
    *,
    views: int = 0,
    seed: int = 0,
    desc: str = "embedding",
) -> np.ndarray:
    """embed_paths, memoized in cache_dir by the extractor file's hash, the preprocessing and the image list."""
    if cache_dir is None:
        return embed_paths(extractor, spec, paths, views=views, seed=seed, desc=desc)
    key = hashlib.sha256(json.dumps({
        "extractor": file_sha256(extractor.path), "spec": spec.to_dict(), "views": views, "seed": seed,
        "paths": [str(Path(p).resolve()) for p in paths],
    }).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"emb-{key}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            log.warning("ignoring unreadable cache %s: %s", path, err)
    e = embed_paths(extractor, spec, paths, views=views, seed=seed, desc=desc)
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.save(buf, e, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    return e
