"""Fine-tuning rows of the CUB benchmark (Imprinting+FT, Rand+FT, AllClassJoint) on the CPU fast path:
the base-trained head of a checkpoint, the backbone frozen, its pooled features cached."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from imprinting.export import lowshot
from imprinting.export.checkpoint import build_from_checkpoint, load_checkpoint
from imprinting.export.cub import NUM_BASE, Cub, draw_shots
from imprinting.export.features import pooled_features
from imprinting.export.finetune import FinetuneOptions, all_class_joint, extend_head, finetune
from imprinting.export.model import ExtractorConfig, ImprintExtractor
from imprinting.export.train import Head

log = logging.getLogger("cub")


def head_from_checkpoint(path: str) -> tuple[Head, dict]:
    ckpt = load_checkpoint(path)
    model, clf = build_from_checkpoint(ckpt)
    dim = ckpt.config.embedding_dim
    head = Head(model.backbone.num_features, dim, clf.weight.shape[0], float(clf.scale))
    with torch.no_grad():
        if dim:
            head.embed.load_state_dict(model.embed.state_dict())
        head.classifier.weight.copy_(clf.weight)
        head.classifier.scale.copy_(clf.scale)
    return head.eval(), ckpt.training


def evaluate_finetuning(cub: Cub, checkpoint: str, shots: list[int], seeds: int, epochs: int, views: int,
                        cache: str | None) -> dict:
    head, training = head_from_checkpoint(checkpoint)
    backbone = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    from imprinting.runtime.preprocess import PreprocessSpec

    spec = PreprocessSpec()
    base_idx = cub.indices(train=True, base=True)
    novel_idx = cub.indices(train=True, base=False)
    test_idx = cub.indices(train=False)
    t0 = time.perf_counter()
    # The same cache keys as `imprint train` (same paths, views, seed), so base features are reused.
    fb, _ = pooled_features(backbone, [cub.paths[i] for i in base_idx], spec, views=views, cache_dir=cache)
    # One augmented view per novel image (the shots are few; extraction time is what limits a CPU run).
    fn, _ = pooled_features(backbone, [cub.paths[i] for i in novel_idx], spec, views=1, cache_dir=cache)
    ft, _ = pooled_features(backbone, [cub.paths[i] for i in test_idx], spec, views=0, cache_dir=cache)
    log.info("pooled features in %.0f s", time.perf_counter() - t0)
    fn = fn[:, np.arange(fb.shape[1]) % fn.shape[1]]  # repeat novel views to the base's view count
    novel_pos = {int(i): k for k, i in enumerate(novel_idx)}
    t_lab = cub.labels[test_idx]
    novel_mask = t_lab >= NUM_BASE
    test_x = torch.from_numpy(ft[:, 0].astype(np.float32))
    rows: dict[str, dict[str, list]] = {}
    num_classes = len(cub.class_names)

    def record(name: str, n: int, logits: torch.Tensor) -> None:
        s = lowshot.score(logits.argmax(1).numpy(), t_lab, novel_mask)
        rows.setdefault(name, {}).setdefault(str(n), []).append((s.novel, s.all))

    for n in shots:
        for seed in range(seeds):
            shots_idx = draw_shots(cub, n, seed)
            nf = fn[[novel_pos[int(i)] for i in shots_idx]]
            nl = cub.labels[shots_idx]
            feats = np.concatenate([fb, nf])
            labels = np.concatenate([cub.labels[base_idx], nl])
            for init, name in (("imprint", "Imprinting (torch head)"), ("random", "Rand-noFT (torch head)")):
                h = extend_head(head, nf, nl, num_classes - NUM_BASE, init, seed)
                with torch.no_grad():
                    record(name, n, h(test_x))
                h = finetune(h, feats, labels, num_classes, FinetuneOptions(epochs=epochs, seed=seed), len(base_idx))
                with torch.no_grad():
                    record("Imprinting+FT" if init == "imprint" else "Rand+FT", n, h(test_x))
            j = all_class_joint(feats, labels, num_classes, max(head.classifier.weight.shape[1], 64),
                                FinetuneOptions(epochs=epochs, lr=1e-3, seed=seed), len(base_idx))
            with torch.no_grad():
                record("AllClassJoint", n, j(test_x))
            log.info("fine-tuning n=%d seed=%d done", n, seed)
    return {"name": f"{checkpoint} (PyTorch head, frozen backbone, FT {epochs} epochs)", "file": checkpoint,
            "format": "pytorch", "precision": "fp32", "trained_base": True,
            "dim": int(head.classifier.weight.shape[1]), "offsets": {}, "offsets_from": "none", "rows": rows, "bundle": checkpoint,
            "bundle_name": "checkpoint", "source": {"training": {k: v for k, v in training.items()
                                                                 if k in ("epochs", "dim", "views")}}}
