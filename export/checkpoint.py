"""Base-training checkpoints: plain dicts of tensors, numbers and strings that load with
`torch.load(weights_only=True)` (no pickled classes, safe to open from anywhere).

Layout (format "imprinting-checkpoint", version 1):
    config: {"backbone": str, "embedding_dim": int}
    extractor: state dict of ImprintExtractor (fp32)
    classifier: {"weight": float32 (K, D) (rows need not be unit length), "scale": float32 ()}
    labels: [K str], counts: [K int] (training images per base class)
    preprocess: PreprocessSpec.to_dict()
    training: free-form numbers/strings (epoch, seed, optimizer state for resuming, ...)
    exemplars (optional): {"embeddings": float16 (M, D) unit embeddings of some base training images,
        "classes": int64 (M,)}: what a bundle carries so that refinement keeps the base classes in balance
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imprinting.runtime.preprocess import PreprocessSpec

from .model import CosineClassifier, ExtractorConfig, ImprintExtractor

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "imprinting-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """A trained extractor with its base classes. weight float32 (K, D), counts int (K,)."""

    config: ExtractorConfig
    extractor_state: dict[str, torch.Tensor]
    weight: torch.Tensor
    scale: float
    labels: tuple[str, ...]
    counts: tuple[int, ...]
    preprocess: PreprocessSpec = PreprocessSpec()
    training: dict[str, Any] = field(default_factory=dict)
    # (embeddings float16 (M, D), classes int64 (M,)) of base training images, or None (older checkpoints).
    exemplars: tuple[torch.Tensor, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        k = len(self.labels)
        if self.weight.ndim != 2 or self.weight.shape[0] != k or len(self.counts) != k:
            raise ValueError(
                f"checkpoint is inconsistent: {k} labels, weight {tuple(self.weight.shape)}, {len(self.counts)} counts"
            )
        if self.exemplars is not None:
            e, c = self.exemplars
            if e.ndim != 2 or e.shape[1] != self.weight.shape[1] or tuple(c.shape) != (e.shape[0],) or (
                    len(c) and (int(c.min()) < 0 or int(c.max()) >= k)):
                raise ValueError(f"checkpoint exemplars {tuple(e.shape)}, {tuple(c.shape)} do not fit {k} classes of "
                                 f"{self.weight.shape[1]} dimensions")


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Write `ckpt` to `path` (temp file + rename, so an interrupted save keeps the previous file)."""
    path = Path(path)
    data = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": {"backbone": ckpt.config.backbone, "embedding_dim": ckpt.config.embedding_dim},
        "extractor": {k: v.detach().cpu() for k, v in ckpt.extractor_state.items()},
        "classifier": {"weight": ckpt.weight.detach().cpu().float(), "scale": torch.tensor(float(ckpt.scale))},
        "labels": list(ckpt.labels),
        "counts": [int(c) for c in ckpt.counts],
        "preprocess": ckpt.preprocess.to_dict(),
        "training": dict(ckpt.training),
    }
    if ckpt.exemplars is not None:
        data["exemplars"] = {"embeddings": ckpt.exemplars[0].detach().cpu().half(),
                             "classes": ckpt.exemplars[1].detach().cpu().long()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; ValueError with the reason for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist; train one with `imprint train` or omit --checkpoint")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle/zip/runtime errors for foreign or damaged files
        raise ValueError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(d, dict) or d.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an imprinting checkpoint (written by `imprint train`)")
    if d.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} has format version {d.get('format_version')}; this version reads {CHECKPOINT_VERSION}")
    try:
        return Checkpoint(
            config=ExtractorConfig(**d["config"]),
            extractor_state=d["extractor"],
            weight=d["classifier"]["weight"].float(),
            scale=float(d["classifier"]["scale"]),
            labels=tuple(str(x) for x in d["labels"]),
            counts=tuple(int(c) for c in d["counts"]),
            preprocess=PreprocessSpec.from_dict(d["preprocess"]),
            training=dict(d.get("training") or {}),
            exemplars=(d["exemplars"]["embeddings"], d["exemplars"]["classes"]) if d.get("exemplars") else None,
        )
    except (KeyError, TypeError) as err:
        raise ValueError(f"checkpoint {path} is missing or has a malformed field: {err}") from None


def build_from_checkpoint(ckpt: Checkpoint) -> tuple[ImprintExtractor, CosineClassifier]:
    """The extractor (eval mode, weights loaded strictly) and the base-class classifier of a checkpoint."""
    model = ImprintExtractor(ckpt.config, pretrained=False)
    model.load_state_dict(ckpt.extractor_state, strict=True)
    k, dim = ckpt.weight.shape
    if dim != model.embedding_dim:
        raise ValueError(f"checkpoint classifier is {dim}-d but its extractor makes {model.embedding_dim}-d embeddings")
    clf = CosineClassifier(k, dim, ckpt.scale)
    with torch.no_grad():
        clf.weight.copy_(ckpt.weight)
    return model.eval(), clf.eval()
