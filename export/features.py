"""Backbone outputs of a labelled image set, extracted once (with augmented views) and cached.

The fast CPU training path trains only the embedding layer and the classifier on pooled features; the
middle path fine-tunes the last blocks on the activations of the frozen blocks before them. Either way
the expensive frozen part runs once per view instead of once per epoch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from imprinting.runtime.images import load_image
from imprinting.runtime.preprocess import PreprocessSpec, centre_crop_resized, normalize
from imprinting.runtime.atomic import atomic_write_bytes

from .embeddings import augmented_crops
from .model import ImprintExtractor

log = logging.getLogger(__name__)


def pooled_features(model: ImprintExtractor, paths: Sequence[Path], spec: PreprocessSpec,
                    **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features float16 (N, 1 + views, F) (view 0: the centre crop; then random crops and flips),
    and a bool mask (N,) of the images that could be read (corrupt ones are skipped and counted).
    options: backbone_outputs' keywords (views, seed, batch, forward_chunk, cache_dir, progress)."""
    return backbone_outputs(model, model.pooled, "pooled", paths, spec, **options)


def _cache_file(cache_dir: Path, model: ImprintExtractor, tag: str, paths: Sequence[Path], spec: PreprocessSpec,
                views: int, seed: int) -> Path:
    """Where backbone_outputs caches these outputs: named by everything they depend on."""
    h = hashlib.sha256(json.dumps({"paths": [str(Path(p).resolve()) for p in paths], "spec": spec.to_dict(), "views": views,
                                   "seed": seed, "backbone": model.config.backbone,
                                   **({"tag": tag} if tag != "pooled" else {})}).encode())
    for name, t in model.backbone.state_dict().items():  # the weights matter, not just the name
        if name.endswith("weight"):
            h.update(t.detach().float().numpy().tobytes()[:4096])
    return cache_dir / f"{tag}-{h.hexdigest()[:24]}.npz"


def backbone_outputs(
    model: ImprintExtractor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    tag: str,
    paths: Sequence[Path],
    spec: PreprocessSpec,
    views: int = 4,
    seed: int = 0,
    batch: int = 32,
    forward_chunk: int = 4,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """fn (a frozen part of `model`: images (n, 3, S, S) -> (n, ...)) applied to every image's views:
    float16 (N, 1 + views, ...), and the bool mask (N,) of readable images. `tag` names fn in the cache."""
    key = _cache_file(Path(cache_dir), model, tag, paths, spec, views, seed) if cache_dir is not None else None
    if key is not None and key.is_file():
        with np.load(key, allow_pickle=False) as z:
            log.info("%s from cache %s", tag, key)
            return z["features"], z["ok"]
    rng = np.random.default_rng(seed)
    n = len(paths)
    out: np.ndarray | None = None  # allocated once the first output's shape is known
    ok = np.ones(n, bool)
    bar = tqdm(total=n, desc=f"backbone ({tag})", unit="img", disable=not progress)
    model.eval()
    # Channels-last and small forward chunks: on a 2-core CPU this runs the backbone about 5x faster
    # than NCHW batches of 160 crops (measured 18 vs 100 ms per crop; large batches thrash the cache).
    model.to(memory_format=torch.channels_last)
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
            x = torch.from_numpy(normalize(np.concatenate(crops), spec, "NCHW"))
            with torch.inference_mode():
                f = torch.cat([fn(c.contiguous(memory_format=torch.channels_last)).contiguous()
                               for c in x.split(forward_chunk)]).numpy()
            if out is None:
                out = np.zeros((n, 1 + views, *f.shape[1:]), np.float16)
            out[idx] = f.reshape(len(idx), 1 + views, *f.shape[1:]).astype(np.float16)
        bar.update(min(batch, n - i))
    bar.close()
    if out is None:
        raise ValueError(f"none of the {n} images could be read")
    if (~ok).any():
        log.warning("skipped %d unreadable images of %d", int((~ok).sum()), n)
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, features=out, ok=ok)
        atomic_write_bytes(key, buf.getvalue())
    return out, ok
