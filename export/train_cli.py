"""`imprint train`: base training on CPU (the fast frozen-backbone path), writing a checkpoint for
`imprint export --checkpoint`."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="base training: embedding layer + cosine classifier on a frozen backbone")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cub", metavar="ROOT", help="CUB-200-2011 directory: trains on base classes 1-100")
    src.add_argument("--folder", metavar="DIR", help="an image folder, one sub-folder per class")
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--dim", type=int, default=1280, help="embedding size D (0: pooled features, train the classifier only)")
    p.add_argument("--views", type=int, default=4, help="augmented views per image besides the centre crop")
    p.add_argument("--epochs", type=int, help="train this many epochs (default: chosen by the pseudo-novel check)")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="cache/features", help="pooled-feature cache directory ('' for none)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from imprinting.runtime.preprocess import PreprocessSpec

    from .checkpoint import Checkpoint, save_checkpoint
    from .datasets import cub_base, image_folder
    from .features import pooled_features
    from .model import ExtractorConfig, ImprintExtractor
    from .train import HeadOptions, train_head

    opt = HeadOptions(dim=args.dim, lr=args.lr, max_epochs=args.max_epochs, epochs=args.epochs, seed=args.seed)
    if args.views < 0:
        raise ValueError(f"--views must be >= 0, got {args.views}")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: directory {out.parent} does not exist")
    data = cub_base(args.cub) if args.cub else image_folder(args.folder)
    spec = PreprocessSpec()
    t0 = time.perf_counter()
    backbone = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    feats, ok = pooled_features(backbone, data.paths, spec, views=args.views, seed=args.seed,
                                cache_dir=args.cache or None)
    t_feat = time.perf_counter() - t0
    feats, labels = feats[ok], data.labels[ok]
    missing = sorted(set(range(len(data.class_names))) - set(labels.tolist()))
    if missing:
        raise ValueError(f"class {data.class_names[missing[0]]!r} has no readable images")
    print(f"features: {len(labels)} images x {feats.shape[1]} views in {t_feat:.0f} s "
          f"({int((~ok).sum())} unreadable skipped)")

    def progress(epoch: int, score: float) -> None:
        print(f"  epoch {epoch}: pseudo-novel all-class top-1 {score:.1%}")

    t1 = time.perf_counter()
    head, report = train_head(feats, labels, len(data.class_names), opt, progress)
    t_train = time.perf_counter() - t1
    dim = args.dim if head is not None else 0
    model = ImprintExtractor(ExtractorConfig(embedding_dim=dim))
    counts = np.bincount(labels, minlength=len(data.class_names))
    if head is not None:
        if head.embed is not None:
            model.embed.load_state_dict(head.embed.state_dict())
        weight, scale = head.classifier.weight.detach().clone(), float(head.classifier.scale.detach())
    else:
        pooled = torch.from_numpy(feats[:, 0].astype(np.float32))
        from .model import imprint_weights

        weight, scale = imprint_weights(pooled, torch.from_numpy(labels), len(data.class_names)), opt.scale_init
    training = {"path": "frozen backbone, cached pooled features, trained head", "epochs": report["epochs"],
                "dim": dim, "views": args.views, "lr": args.lr, "seed": args.seed,
                "feature_seconds": round(t_feat, 1), "train_seconds": round(t_train, 1),
                "dataset": str(args.cub or args.folder), "images": int(len(labels)),
                **{k: v for k, v in report.items() if k != "epochs"}}
    save_checkpoint(out, Checkpoint(ExtractorConfig(embedding_dim=dim), model.state_dict(), weight, scale,
                                    data.class_names, tuple(int(c) for c in counts), spec, training))
    print(f"trained {report['epochs']} epochs in {t_train:.0f} s (features {t_feat:.0f} s); "
          f"wrote {out}. Next: imprint export --checkpoint {out} --out bundles/{out.stem}")
    return 0
