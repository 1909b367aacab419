"""Imprinting+FT rows on the middle path: the last blocks of an `imprint train --blocks K` checkpoint
fine-tuned with the classifier on base + novel activations (cached through the frozen blocks)."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from imprinting.export import lowshot
from imprinting.export.blocks import Tail, embed_activations, finetune_tail, frozen_prefix
from imprinting.export.checkpoint import build_from_checkpoint, load_checkpoint
from imprinting.export.cub import NUM_BASE, Cub, draw_shots
from imprinting.export.features import backbone_outputs
from imprinting.export.model import ExtractorConfig, ImprintExtractor, imprint_weights
from imprinting.runtime.preprocess import PreprocessSpec

log = logging.getLogger("cub")


def evaluate_block_finetuning(cub: Cub, checkpoint: str, shots: list[int], seeds: int, epochs: int, lr: float,
                              views: int, cache: str | None) -> dict:
    ckpt = load_checkpoint(checkpoint)
    blocks = int(ckpt.training.get("blocks") or 0)
    if blocks < 1:
        raise ValueError(f"{checkpoint} was not trained with --blocks; block fine-tuning needs such a checkpoint")
    spec = PreprocessSpec()
    frozen = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    prefix = frozen_prefix(frozen, blocks)
    tag = f"blocks{len(frozen.backbone._blocks) - blocks}"
    base_idx, novel_idx, test_idx = (cub.indices(train=True, base=True), cub.indices(train=True, base=False),
                                     cub.indices(train=False))
    t0 = time.perf_counter()
    # The cache keys of `imprint train --blocks` for the base images: their activations are reused.
    ab, _ = backbone_outputs(frozen, prefix, tag, [cub.paths[i] for i in base_idx], spec, views=views, cache_dir=cache)
    an, _ = backbone_outputs(frozen, prefix, tag, [cub.paths[i] for i in novel_idx], spec, views=1, cache_dir=cache)
    at, _ = backbone_outputs(frozen, prefix, tag, [cub.paths[i] for i in test_idx], spec, views=0, cache_dir=cache)
    log.info("activations in %.0f s", time.perf_counter() - t0)
    an = an[:, np.arange(ab.shape[1]) % an.shape[1]]  # repeat novel views to the base's view count
    pos = {int(i): k for k, i in enumerate(novel_idx)}
    t_lab = cub.labels[test_idx]
    novel_mask = t_lab >= NUM_BASE
    num_classes = len(cub.class_names)
    rows: dict[str, dict[str, list]] = {}

    def record(name: str, n: int, tail: Tail) -> None:
        e = embed_activations(tail.eval(), at[:, 0])
        s = lowshot.score((e @ tail.classifier.unit_weight().detach().numpy().T).argmax(1), t_lab, novel_mask)
        rows.setdefault(name, {}).setdefault(str(n), []).append((s.novel, s.all))

    for n in shots:
        for seed in range(seeds):
            s_idx = draw_shots(cub, n, seed)
            na, nl = an[[pos[int(i)] for i in s_idx]], cub.labels[s_idx]
            model, clf = build_from_checkpoint(ckpt)
            tail = Tail(model, blocks, num_classes, float(clf.scale))
            eb, en = embed_activations(tail, ab[:, 0]), embed_activations(tail, na[:, 0])
            with torch.no_grad():
                tail.classifier.weight[:NUM_BASE] = imprint_weights(torch.from_numpy(eb), torch.from_numpy(cub.labels[base_idx]), NUM_BASE)
                tail.classifier.weight[NUM_BASE:] = imprint_weights(torch.from_numpy(en), torch.from_numpy(nl - NUM_BASE),
                                                                    num_classes - NUM_BASE)
            record("Imprinting (torch, middle path)", n, tail)
            finetune_tail(tail, np.concatenate([ab, na]), np.concatenate([cub.labels[base_idx], nl]), num_classes,
                          epochs, lr, len(base_idx), seed=seed)
            record(f"Imprinting+FT (last {blocks} blocks)", n, tail)
            log.info("block fine-tuning n=%d seed=%d done", n, seed)
    return {"name": f"{checkpoint} (PyTorch, last {blocks} blocks + head fine-tuned, FT {epochs} epochs, lr {lr:g})",
            "file": checkpoint, "format": "pytorch", "precision": "fp32", "trained_base": True, "dim": int(eb.shape[1]),
            "offsets": {}, "offsets_from": "none", "rows": rows, "bundle": checkpoint, "bundle_name": "checkpoint",
            "source": {"training": {k: v for k, v in ckpt.training.items() if k in ("epochs", "blocks", "views", "lr")}}}
