"""Labelled image sets for base training: an image-folder layout (one folder per class) or CUB-200-2011."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imprinting.runtime.images import IMAGE_SUFFIXES

from .cub import load_cub


@dataclass(frozen=True)
class LabelledImages:
    """paths (N,), labels int64 (N,) in [0, K), class names (K,)."""

    paths: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]


def image_folder(root: str | os.PathLike[str]) -> LabelledImages:
    """root/<class>/<image>: classes sorted by folder name. Empty classes are an error."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class folders; expected {root}/<class name>/<images>")
    paths, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(p for p in c.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {c} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += files
        labels += [k] * len(files)
    return LabelledImages(tuple(paths), np.asarray(labels, np.int64), tuple(c.name for c in classes))


def cub_base(root: str | os.PathLike[str] | None) -> LabelledImages:
    """The paper's base-training set: every training image of CUB classes 1-100."""
    cub = load_cub(root)
    idx = cub.indices(train=True, base=True)
    return LabelledImages(tuple(cub.paths[i] for i in idx), cub.labels[idx], cub.class_names[:100])
