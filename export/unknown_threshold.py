"""The bundle's "unknown" threshold: the top-1 cosine below which an answer is reported as unknown, chosen at
export time from held-out images for a stated false-accept rate.

Open-set trials over images grouped by source (each source is a class: a photo and its random views, or
a labelled class): in each trial half of the sources are taught from `shots` of their views, the rest are
never taught. The top-1 cosine of a never-taught image against the taught classes is a *negative* (it should
be unknown); the top-1 cosine of a held-out view of a taught source that lands on its own class is a
*positive*. The threshold is the (1 - false_accept) quantile of the negatives: at most that share of images
of never-taught classes gets a label. The accept rate of the positives at that threshold is reported with it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .calibration import SAMPLE_PHOTOS, augment, load_image_dir, sample_photos

if TYPE_CHECKING:
    import torch

    from imprinting.runtime.preprocess import PreprocessSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThresholdOptions:
    """false_accept: target share of never-taught images that still get a label; shots: views per taught
    class; trials: random taught/untaught splits; seed for the splits."""

    false_accept: float = 0.05
    shots: int = 1
    trials: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.false_accept < 0.5:
            raise ValueError(f"false_accept must be in (0, 0.5), got {self.false_accept}")
        if self.shots < 1 or self.trials < 1:
            raise ValueError("shots and trials must be >= 1")


@dataclass(frozen=True)
class Threshold:
    """min_cosine: the threshold; false_accept: the target; accept: share of positives kept at it;
    negatives/positives: how many top-1 cosines it rests on; sources: classes in the trials."""

    min_cosine: float
    false_accept: float
    accept: float
    negatives: int
    positives: int
    sources: int
    shots: int

    def to_manifest(self) -> dict:
        return {"unknown_min_cosine": round(self.min_cosine, 4), "unknown_false_accept": self.false_accept,
                "unknown_accept": round(self.accept, 4), "unknown_trials": {
                    "negatives": self.negatives, "positives": self.positives, "sources": self.sources,
                    "shots": self.shots}}


def choose_threshold(embeddings: np.ndarray, groups: np.ndarray, options: ThresholdOptions = ThresholdOptions()) -> Threshold:
    """The unknown threshold from unit embeddings float32 (n, D) and their source ids int (n,).

    Needs at least 4 sources with shots + 1 images each (ValueError otherwise)."""
    e = np.asarray(embeddings, np.float32)
    g = np.asarray(groups)
    if e.ndim != 2 or g.shape != (e.shape[0],):
        raise ValueError(f"expected embeddings (n, D) and groups (n,), got {e.shape} and {g.shape}")
    ids = [s for s in np.unique(g) if (g == s).sum() >= options.shots + 1]
    if len(ids) < 4:
        raise ValueError(f"choosing an unknown threshold needs at least 4 sources with {options.shots + 1} images "
                         f"each, got {len(ids)}")
    rng = np.random.default_rng(options.seed)
    members = {s: np.flatnonzero(g == s) for s in ids}
    negatives, positives = [], []
    for _ in range(options.trials):
        order = rng.permutation(len(ids))
        taught = [ids[i] for i in order[: len(ids) // 2]]
        untaught = [ids[i] for i in order[len(ids) // 2:]]
        rows, held = [], []
        for s in taught:
            m = rng.permutation(members[s])
            w = e[m[: options.shots]].sum(0)
            rows.append(w / np.linalg.norm(w))
            held.append(m[options.shots:])
        w = np.stack(rows)
        for c, m in enumerate(held):
            cos = e[m] @ w.T
            right = cos.argmax(1) == c
            positives.extend(cos[right, c].tolist())
        for s in untaught:
            negatives.extend((e[members[s]] @ w.T).max(1).tolist())
    neg = np.asarray(negatives)
    t = min(max(float(np.quantile(neg, 1.0 - options.false_accept)), -1.0), 1.0)  # float rounding can pass 1
    pos = np.asarray(positives)
    accept = float((pos >= t).mean()) if pos.size else 0.0
    return Threshold(t, options.false_accept, accept, int(neg.size), int(pos.size), len(ids), options.shots)


def threshold_images(calib_dir: str | os.PathLike[str] | None = None, views: int = 8, max_sources: int = 60,
                     seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Images uint8 RGB (H, W, 3) for choose_threshold and their source ids (n,): each source photo (the
    user's --calib-dir, else scikit-image's sample photos) and views - 1 random views of it."""
    sources = load_image_dir(calib_dir, limit=max_sources, seed=seed) if calib_dir is not None else sample_photos(SAMPLE_PHOTOS)
    rng = np.random.default_rng(seed)
    images, groups = [], []
    for i, photo in enumerate(sources):
        images.append(photo)
        images.extend(augment(photo, rng) for _ in range(views - 1))
        groups.extend([i] * views)
    return images, np.asarray(groups)


def threshold_for(model: "torch.nn.Module", spec: "PreprocessSpec", calib_dir: str | os.PathLike[str] | None,
                  false_accept: float, seed: int = 0) -> Threshold:
    """The threshold for an exported model: PyTorch fp32 embeddings of threshold_images (the int8 files agree
    with them to a cosine of 0.99, far below the spread of the negatives)."""
    import torch

    from imprinting.runtime.preprocess import preprocess

    images, groups = threshold_images(calib_dir, seed=seed)
    x = preprocess(images, spec, "NCHW")
    with torch.no_grad():
        e = torch.cat([model(torch.from_numpy(b)) for b in np.array_split(x, max(1, len(x) // 16))]).numpy()
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    t = choose_threshold(e, groups, ThresholdOptions(false_accept=false_accept, seed=seed))
    if t.accept < 0.5:
        log.warning("the unknown threshold %.3f keeps only %.0f%% of views of taught photos: this extractor barely "
                    "tells the calibration photos apart (an untrained model?)", t.min_cosine, 100 * t.accept)
    log.info("unknown threshold %.3f (false accept %.0f%% on %d never-taught images; %.0f%% of taught ones kept)",
             t.min_cosine, 100 * false_accept, t.negatives, 100 * t.accept)
    return t
