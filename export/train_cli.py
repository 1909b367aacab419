"""`imprint train`: base training on CPU, writing a checkpoint for `imprint export --checkpoint`.

Two paths: the fast one (a frozen backbone: cached pooled features, a trained embedding layer and
classifier) and, with --blocks K, the middle one (the last K backbone blocks fine-tuned on cached
activations of the frozen blocks before them; runs data-parallel under torchrun).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from imprinting.hint import imprint_command

if TYPE_CHECKING:
    import numpy as np

    from .train import TrainedBase

log = logging.getLogger(__name__)


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="base training: embedding layer + cosine classifier (+ the last backbone blocks)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cub", metavar="ROOT", help="CUB-200-2011 directory: trains on base classes 1-100")
    src.add_argument("--folder", metavar="DIR", help="an image folder, one sub-folder per class")
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--dim", type=int, default=1280, help="embedding size D (0: pooled features, train the classifier only)")
    p.add_argument("--blocks", type=int, default=0, metavar="K",
                   help="also fine-tune the last K backbone blocks on cached activations (the middle path; "
                        "0: frozen backbone, the fast path; 16 or more: the whole network on images augmented "
                        "afresh every epoch, the paper's recipe, for a GPU or torchrun)")
    p.add_argument("--views", type=int, default=4, help="augmented views per image besides the centre crop")
    p.add_argument("--epochs", type=int, help="train this many epochs (default: chosen by the pseudo-novel check); "
                   "with --blocks an interrupted run resumes from OUT.state, written after every epoch")
    p.add_argument("--max-epochs", type=int, help="bound of the epoch search (default 30; 6 with --blocks)")
    p.add_argument("--lr", type=float, help="learning rate of the new layers (default 1e-3; with --blocks, "
                   "of the pretrained blocks, new layers get 10x; default 1e-5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="cache/features", help="backbone-output cache directory ('' for none)")
    p.add_argument("--base-rows", choices=["imprinted", "trained"], default="imprinted",
                   help="base-class rows in the bundle: imprinted from the training images (default; with the "
                        "shot offsets it scores best on CUB) or the trained classifier's rows")
    p.add_argument("--no-shot-offsets", action="store_true",
                   help="do not choose shot-aware calibration offsets for the bundle")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from imprinting.runtime.exemplars import pick_exemplars
    from imprinting.runtime.preprocess import PreprocessSpec

    from .checkpoint import Checkpoint, save_checkpoint
    from .datasets import cub_base, image_folder
    from .distributed import close_distributed, rank_and_world
    from .lowshot import shot_offsets
    from .model import ExtractorConfig, imprint_weights

    if args.views < 0 or args.blocks < 0:
        raise ValueError(f"--views and --blocks must be >= 0, got {args.views} and {args.blocks}")
    out = Path(args.out)
    if out.exists() and not out.is_file():
        raise ValueError(f"cannot write {out}: it is a directory; --out names the checkpoint file (.pt)")
    out.parent.mkdir(parents=True, exist_ok=True)  # `--out runs/base.pt` on a fresh clone
    data = cub_base(args.cub) if args.cub else image_folder(args.folder)
    spec = PreprocessSpec()
    t0 = time.perf_counter()
    base = (_train_blocks if args.blocks else _train_head)(args, data, spec)
    rank = rank_and_world()[0]
    close_distributed()
    t_train = time.perf_counter() - t0 - base.feature_seconds
    if rank != 0:
        return 0
    rows, labels = base.rows, base.labels
    if rows is None or args.base_rows == "imprinted":
        rows = imprint_weights(torch.from_numpy(base.embeddings), torch.from_numpy(labels), len(data.class_names))
    offsets = {} if args.no_shot_offsets else shot_offsets(base.embeddings, labels)
    if offsets:
        print("shot offsets (pseudo-novel split of the base classes): "
              + ", ".join(f"{n} shots {o:+.2f}" for n, o in offsets.items()))
    counts = np.bincount(labels, minlength=len(data.class_names))
    dim = base.model.config.embedding_dim
    path = (f"last {args.blocks} blocks fine-tuned on cached activations" if args.blocks
            else "frozen backbone, cached pooled features, trained head")
    training = {"path": path, "epochs": base.epochs, "dim": dim, "blocks": args.blocks, "views": args.views,
                "lr": base.lr, "seed": args.seed,
                "feature_seconds": round(base.feature_seconds, 1), "train_seconds": round(t_train, 1),
                "dataset": str(args.cub or args.folder), "images": int(len(labels)),
                "base_rows": args.base_rows if base.rows is not None else "imprinted",
                "shot_offsets": offsets, **base.report}
    # A few embeddings of every base class travel with the bundle, so refinement keeps the base classes in
    # balance (runtime/exemplars.py).
    ex_emb, ex_cls = pick_exemplars(base.embeddings, labels, per_class=10, seed=args.seed)
    save_checkpoint(out, Checkpoint(ExtractorConfig(embedding_dim=dim), base.model.state_dict(), rows, base.scale,
                                    data.class_names, tuple(int(c) for c in counts), spec, training,
                                    (torch.from_numpy(ex_emb).half(), torch.from_numpy(ex_cls))))
    Path(str(out) + ".state").unlink(missing_ok=True)  # the run is complete; nothing left to resume
    if base.epochs == 0:
        print(_why_no_epochs(base.report, args.dim, dim, base.model.embedding_dim))
    print(f"trained {base.epochs} epochs in {t_train:.0f} s (features {base.feature_seconds:.0f} s); "
          f"wrote {out}. Next: {imprint_command()} export --checkpoint {out} --out bundles/{out.stem}")
    return 0


def _why_no_epochs(report: dict, requested: int, dim: int, width: int) -> str:
    """The one line that says why the epoch search kept the untrained model (--dim `requested`, checkpoint
    embedding layer `dim`, 0 for none, embeddings `width` wide), and what to do about it."""
    history = {int(k): v for k, v in report.get("pseudo_novel_history", {}).items()}
    trained = {e: s for e, s in history.items() if e > 0}
    if 0 in history and trained:
        best = max(trained, key=trained.get)
        scores = (f"the pretrained features scored {history[0]:.1%} and no trained epoch did better "
                  f"(best {trained[best]:.1%} at epoch {best})")
    elif not history:  # --epochs 0: asked for
        return ("0 epochs (--epochs 0): the checkpoint keeps the untrained model with base rows imprinted from "
                "your images")
    else:
        scores = "the pretrained features scored best"
    kept = (f"the checkpoint keeps the pretrained {width}-d pooled features (no --dim {requested} embedding layer; "
            "export it without --dim) " if dim != requested else "the checkpoint keeps the untrained model ")
    return (f"0 epochs: on the pseudo-novel check (base classes held out of training, imprinted from their "
            f"images) {scores}; {kept}with base rows imprinted from your images. More classes and photos per "
            f"class let training help; --epochs N trains anyway.")


def _check_features(ok, labels, class_names, what: str, t_feat: float, views: int) -> None:
    missing = sorted(set(range(len(class_names))) - set(labels[ok].tolist()))
    if missing:
        raise ValueError(f"class {class_names[missing[0]]!r} has no readable images")
    print(f"{what}: {int(ok.sum())} images x {1 + views} views in {t_feat:.0f} s ({int((~ok).sum())} unreadable skipped)")


def _progress(epoch: int, score: float) -> None:
    print(f"  epoch {epoch}: pseudo-novel all-class top-1 {score:.1%}")


def _train_head(args: argparse.Namespace, data, spec) -> "TrainedBase":
    """The fast path: a frozen backbone's pooled features, a trained head."""
    from .features import pooled_features
    from .model import ExtractorConfig, ImprintExtractor
    from .train import HeadOptions, TrainedBase, embed_features, train_head

    opt = HeadOptions(dim=args.dim, lr=args.lr or 1e-3, max_epochs=args.max_epochs or 30, epochs=args.epochs,
                      seed=args.seed)
    t0 = time.perf_counter()
    backbone = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    feats, ok = pooled_features(backbone, data.paths, spec, views=args.views, seed=args.seed,
                                cache_dir=args.cache or None)
    t_feat = time.perf_counter() - t0
    _check_features(ok, data.labels, data.class_names, "features", t_feat, args.views)
    feats, labels = feats[ok], data.labels[ok]
    head, report = train_head(feats, labels, len(data.class_names), opt, _progress)
    model = ImprintExtractor(ExtractorConfig(embedding_dim=args.dim if head is not None else 0))
    if head is not None and head.embed is not None:
        model.embed.load_state_dict(head.embed.state_dict())
    return TrainedBase(
        model, head.classifier.weight.detach().clone() if head is not None else None,
        float(head.classifier.scale.detach()) if head is not None else opt.scale_init,
        embed_features(head, feats[:, 0]), labels, report.pop("epochs"), opt.lr, t_feat, report)


def _readable(paths) -> "np.ndarray":
    """Bool mask (N,) of the images that decode; corrupt ones are logged and skipped."""
    import numpy as np

    from imprinting.runtime.images import load_image

    ok = np.ones(len(paths), bool)
    for i, p in enumerate(paths):
        try:
            load_image(p)
        except ValueError as err:
            ok[i] = False
            log.warning("skipping unreadable image: %s", err)
    return ok


def _train_blocks(args: argparse.Namespace, data, spec) -> "TrainedBase":
    """The middle path: the last backbone blocks fine-tuned on cached activations (all blocks: on images)."""
    import torch

    from .blocks import BlockOptions, embed_views, frozen_prefix, train_blocks
    from .distributed import init_distributed
    from .features import backbone_outputs
    from .model import ExtractorConfig, ImprintExtractor
    from .train import TrainedBase
    from .views import ImageViews, as_views

    opt = BlockOptions(trainable_blocks=args.blocks, dim=args.dim, lr=args.lr or 1e-5,
                       max_epochs=args.max_epochs or 6, epochs=args.epochs, seed=args.seed)
    distributed = init_distributed()
    rank = torch.distributed.get_rank() if distributed else 0
    t0 = time.perf_counter()
    frozen = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    cut = len(frozen.backbone._blocks) - args.blocks
    prefix = frozen_prefix(frozen, args.blocks)

    def activations():
        if cut <= 0:  # the full network: images decoded and augmented afresh on every access
            return ImageViews(data.paths, spec, args.views, args.seed), _readable(data.paths)
        return backbone_outputs(frozen, prefix, f"blocks{cut}", data.paths, spec, views=args.views, seed=args.seed,
                                cache_dir=args.cache or None, progress=rank == 0)

    if distributed and args.cache:
        # Rank 0 fills the cache, the others read it.
        if rank == 0:
            acts, ok = activations()
        torch.distributed.barrier()
        if rank != 0:
            acts, ok = activations()
    else:
        acts, ok = activations()
    t_feat = time.perf_counter() - t0
    views = as_views(acts)
    if rank == 0:
        _check_features(ok, data.labels, data.class_names, f"activations {views.item_shape}", t_feat, args.views)
    views, labels = views.subset(ok), data.labels[ok]
    state = Path(args.out).with_name(Path(args.out).name + ".state")
    tail, report = train_blocks(views, labels, len(data.class_names), opt, _progress if rank == 0 else None, state)
    return TrainedBase(tail.model, tail.classifier.weight.detach().clone(), float(tail.classifier.scale.detach()),
                       embed_views(tail, views), labels, report.pop("epochs"), opt.lr, t_feat, report)
