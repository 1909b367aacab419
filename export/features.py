"""Pooled backbone features of a labelled image set, extracted once (with augmented views) and cached.

The fast CPU training path trains only the embedding layer and the classifier on these, so the
expensive backbone runs once per view instead of once per epoch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from imprinting.runtime.images import load_image
from imprinting.runtime.preprocess import PreprocessSpec, centre_crop_resized, normalize
from imprinting.runtime.store import atomic_write_bytes

from .embeddings import augmented_crops
from .model import ImprintExtractor

log = logging.getLogger(__name__)


def pooled_features(
    model: ImprintExtractor,
    paths: Sequence[Path],
    spec: PreprocessSpec,
    views: int = 4,
    seed: int = 0,
    batch: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features float16 (N, 1 + views, F) (view 0: the centre crop; then random crops and flips),
    and a bool mask (N,) of the images that could be read (corrupt ones are skipped and counted)."""
    key = None
    if cache_dir is not None:
        h = hashlib.sha256(json.dumps({"paths": [str(Path(p).resolve()) for p in paths], "spec": spec.to_dict(), "views": views,
                                       "seed": seed, "backbone": model.config.backbone}).encode())
        for name, t in model.backbone.state_dict().items():  # the weights matter, not just the name
            if name.endswith("weight"):
                h.update(t.detach().float().numpy().tobytes()[:4096])
        key = Path(cache_dir) / f"pooled-{h.hexdigest()[:24]}.npz"
        if key.is_file():
            with np.load(key, allow_pickle=False) as z:
                log.info("pooled features from cache %s", key)
                return z["features"], z["ok"]
    rng = np.random.default_rng(seed)
    n = len(paths)
    out = np.zeros((n, 1 + views, model.backbone.num_features), np.float16)
    ok = np.ones(n, bool)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="backbone features", unit="img")
    model.eval()
    for i in range(0, n, batch):
        idx, crops = [], []
        for j in range(i, min(i + batch, n)):
            try:
                img = load_image(paths[j])
            except ValueError as err:
                ok[j] = False
                log.warning("skipping unreadable image: %s", err)
                continue
            crops.append(np.concatenate([centre_crop_resized(img, spec)[None], augmented_crops(img, spec, views, rng)]))
            idx.append(j)
        if idx:
            x = normalize(np.concatenate(crops), spec, "NCHW")
            with torch.inference_mode():
                f = model.pooled(torch.from_numpy(x)).numpy()
            out[idx] = f.reshape(len(idx), 1 + views, -1).astype(np.float16)
        if bar is not None:
            bar.update(min(batch, n - i))
    if bar is not None:
        bar.close()
    if (~ok).any():
        log.warning("skipped %d unreadable images of %d", int((~ok).sum()), n)
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, features=out, ok=ok)
        atomic_write_bytes(key, buf.getvalue())
    return out, ok
