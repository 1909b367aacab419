"""Base training, middle CPU path: fine-tune the last backbone blocks on cached activations.

The frozen early blocks run once per view (the centre crop and random crops/flips) and their output
activations are cached; each epoch then runs only the last `trainable_blocks` MBConv blocks, the 1x1 head
convolution, the pool, the embedding layer and the cosine classifier. On Lite0 at 224 px the last two
blocks see 192 x 7 x 7 activations, so an epoch over CUB's 3,000 base images costs a fraction of a
full-network epoch. BatchNorm statistics stay frozen (the pretrained running means), which is the usual
choice for fine-tuning on a few thousand images.

The paper's optimizer (RMSProp, momentum 0.9, x0.94 every 4 epochs) with its learning-rate split: pretrained
layers at `lr`, new layers (embedding, classifier) at 10x. Epochs are chosen by the same pseudo-novel
check as the fast path (`optim.search_epochs`): the number of epochs that serves held-out base classes
imprinted from 1 and 5 shots best, not the one with the best base accuracy.

With trainable_blocks >= 16 the whole network trains (the paper's recipe): the "activations" are the
images themselves, decoded with a fresh random crop and flip at every access (`views.ImageViews`),
which is what a GPU is for; on a 2-core CPU an epoch over CUB's base images takes minutes, not seconds.

Under `torchrun` (several processes, `WORLD_SIZE` > 1) training is data-parallel with
DistributedDataParallel: every process computes or reads the same activation cache, takes its share of
each batch, and gradients are averaged; rank 0 writes the checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .distributed import local_device, rank_and_world
from .finetune import FinetuneOptions, train_balanced
from .model import CosineClassifier, ExtractorConfig, ImprintExtractor, imprint_weights
from .optim import (OnEpoch, Progress, TrainOptions, classifier_report, paper_optimizer, rounded_history,
                    search_epochs, train_step)
from .views import Views, as_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockOptions(TrainOptions):
    """The middle path's options (see TrainOptions). trainable_blocks: how many of the backbone's last MBConv
    blocks are fine-tuned (with the head conv). lr: pretrained layers; new layers (embedding, classifier) get
    new_lr_factor x lr (the paper: 10). imprint_init starts the classifier from imprinted rows."""

    dim: int = 0
    lr: float = 1e-5
    batch: int = 64
    max_epochs: int = 6
    trainable_blocks: int = 2
    imprint_init: bool = True
    new_lr_factor: float = 10.0

    def __post_init__(self) -> None:
        if self.trainable_blocks < 1:
            raise ValueError(f"trainable_blocks must be >= 1 (0 is the frozen-backbone path), got {self.trainable_blocks}")
        super().__post_init__()


def frozen_prefix(model: ImprintExtractor, trainable_blocks: int):
    """The frozen part as a function: images (n, 3, S, S) -> activations entering the trainable blocks."""
    blocks = model.backbone._blocks
    if trainable_blocks > len(blocks):
        raise ValueError(f"trainable_blocks is {trainable_blocks} but the backbone has only {len(blocks)} blocks "
                         f"(use {len(blocks)} to train the whole network)")
    cut = len(blocks) - trainable_blocks

    def run(x: torch.Tensor) -> torch.Tensor:
        x = model.backbone.stem(x)
        for block in blocks[:cut]:
            x = block(x)
        return x

    return run


class Tail(nn.Module):
    """activations (N, C, h, w) -> unit embeddings (N, D) -> logits (N, K), sharing the model's modules, so
    that training the tail trains the model that gets saved."""

    def __init__(self, model: ImprintExtractor, trainable_blocks: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.model = model
        # All blocks: the full network (the paper's recipe), stem included, fed with images.
        self.full = trainable_blocks >= len(model.backbone._blocks)
        self.blocks = nn.ModuleList(list(model.backbone._blocks)[-trainable_blocks:])
        self.classifier = CosineClassifier(num_classes, model.embedding_dim, scale)
        # Only the tail learns; frozen parameters must not ask for gradients (DDP also insists on it).
        trainable = {id(p) for p in self.pretrained_parameters() + self.new_parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in trainable)

    def embedding(self, act: torch.Tensor) -> torch.Tensor:
        if self.full:
            act = self.model.backbone.stem(act)
        for block in self.blocks:
            act = block(act)
        pooled = F.adaptive_avg_pool2d(self.model.backbone.head(act), 1).flatten(1)
        return self.model.head(pooled)

    def forward(self, act: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedding(act))

    def pretrained_parameters(self) -> list[nn.Parameter]:
        b = self.model.backbone
        stem = (b._conv_stem, b._bn0) if self.full else ()
        return [p for m in (*stem, *self.blocks, b._conv_head, b._bn1) for p in m.parameters()]

    def new_parameters(self) -> list[nn.Parameter]:
        embed = list(self.model.embed.parameters()) if self.model.embed is not None else []
        return embed + list(self.classifier.parameters())

    def train(self, mode: bool = True) -> "Tail":
        """Training mode with the BatchNorm statistics kept frozen (the pretrained running means)."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


def fit_tail(acts: np.ndarray | Views, labels: np.ndarray, num_classes: int, opt: BlockOptions, epochs: int,
             on_epoch: OnEpoch | None = None, state_path: Path | None = None) -> Tail:
    """Train a fresh pretrained model's tail on cached activations float16 (N, V, C, h, w) (or any Views)
    for `epochs`; on_epoch(epoch, tail) after each. Returns the tail (its .model is the trained extractor).

    state_path: after every epoch rank 0 writes the training state there (weights, optimizer, schedule,
    data-order generator; loads with weights_only=True); if the file exists at the start, training resumes
    after its last finished epoch, drawing the same batches an uninterrupted run would have."""
    views = as_views(acts)
    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)  # the same stream on every rank: same order, same views
    tail = Tail(ImprintExtractor(ExtractorConfig(embedding_dim=opt.dim)), opt.trainable_blocks, num_classes,
                opt.scale_init)
    if opt.imprint_init:
        # Start the classifier from imprinted rows (the paper's own idea): random rows send large gradients
        # into the pretrained blocks and wreck them for the first epochs (measured: the pseudo-novel score
        # fell from 45.7% to 26.7% after one epoch with random rows on CUB).
        emb = embed_views(tail.eval(), views)
        with torch.no_grad():
            tail.classifier.weight.copy_(imprint_weights(torch.from_numpy(emb), torch.from_numpy(labels), num_classes))
    rank, world = rank_and_world()
    device = local_device()
    tail.to(device)
    net: nn.Module = tail
    if world > 1:
        net = nn.parallel.DistributedDataParallel(tail, device_ids=[device.index] if device.type == "cuda" else None)
    optim, sched = paper_optimizer(tail.pretrained_parameters(), opt.lr, opt.weight_decay,
                                   new_params=tail.new_parameters(), new_lr_factor=opt.new_lr_factor)
    y_all = torch.from_numpy(labels.astype(np.int64))
    start = 0
    if state_path is not None and Path(state_path).is_file():
        start = _load_state(Path(state_path), tail, optim, sched, rng, opt, epochs)
    for epoch in range(start, epochs):
        tail.train()
        batches = _epoch_batches(rng, len(views), views.num_views, opt.batch, rank, world)
        loader = tqdm(views.loader(batches), desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                      disable=rank != 0)
        for keys, x in zip(batches, loader):
            train_step(net, optim, x.to(device), y_all[[row for row, _ in keys]].to(device))
        sched.step()
        if state_path is not None and rank == 0:
            _save_state(Path(state_path), tail, optim, sched, rng, opt, epoch + 1)
        if on_epoch is not None:
            on_epoch(epoch + 1, tail.eval())
        log.info("epoch %d of %d done", epoch + 1, epochs)
    return tail.eval().cpu()


def _epoch_batches(rng: np.random.Generator, n: int, num_views: int, batch: int, rank: int,
                   world: int) -> list[list[tuple[int, int]]]:
    """This rank's share of one epoch's batches, as (row, view) keys: a random order and a random view per
    image, global batches of batch x world images of which each rank takes every world-th."""
    # Not a DistributedSampler: the order and views come from the run's seeded numpy stream, which a resumed
    # run restores and every rank draws alike; a torch sampler would train other batches than earlier runs.
    order = rng.permutation(n)
    view = rng.integers(0, num_views, n)
    step = batch * world
    # Whole global batches only, so every rank runs the same number of steps.
    starts = range(0, n - step + 1 if n >= step else 1, step)
    return [[(int(r), int(view[r])) for r in order[i : i + step][rank::world]] for i in starts]


def _save_state(path: Path, tail: Tail, optim, sched, rng: np.random.Generator, opt: BlockOptions, epoch: int) -> None:
    state = {"epoch": epoch, "options": repr(opt), "tail": tail.state_dict(), "optim": optim.state_dict(),
             "sched": sched.state_dict(), "rng": json.dumps(rng.bit_generator.state)}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-save leaves the previous epoch's state


def _load_state(path: Path, tail: Tail, optim, sched, rng: np.random.Generator, opt: BlockOptions, epochs: int) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: say which, do not guess
        raise ValueError(f"cannot resume from {path}: {str(err).splitlines()[0]}; delete it to start over") from None
    if state.get("options") != repr(opt):
        raise ValueError(f"{path} was written by a run with other options ({state.get('options')}); "
                         "delete it to start over or run with the same options")
    tail.load_state_dict(state["tail"])
    optim.load_state_dict(state["optim"])
    sched.load_state_dict(state["sched"])
    rng.bit_generator.state = json.loads(state["rng"])
    log.info("resuming from %s after epoch %d of %d", path, state["epoch"], epochs)
    return min(int(state["epoch"]), epochs)


def embed_views(tail: Tail, views: Views, chunk: int = 128) -> np.ndarray:
    """Unit embeddings float32 (N, D) of every row's centre view, in chunks to bound memory."""
    out = []
    device = next(tail.parameters()).device
    batches = views.centre_batches(chunk)
    with torch.inference_mode():
        for x in views.loader(batches):
            out.append(tail.embedding(x.to(device)).cpu().numpy())
    return np.concatenate(out)


def embed_activations(tail: Tail, acts: np.ndarray, chunk: int = 128) -> np.ndarray:
    """Unit embeddings float32 (N, D) of activations (N, C, h, w), in chunks to bound memory."""
    return embed_views(tail, as_views(acts[:, None]), chunk)


def train_blocks(acts: np.ndarray | Views, labels: np.ndarray, num_classes: int, opt: BlockOptions,
                 progress: Progress | None = None, state_path: Path | None = None) -> tuple[Tail, dict]:
    """The middle path: (the trained tail, a report). acts float16 (N, V, C, h, w) (or any Views), view 0
    the centre crop; labels int (N,). Epochs are chosen by the pseudo-novel check unless opt.epochs is set.
    state_path makes the final training resumable (see fit_tail); the epoch search is not."""
    views = as_views(acts)
    report: dict = {}
    epochs = opt.epochs
    if epochs is None:
        epochs, history = search_epochs(
            labels, opt.max_epochs,
            fit=lambda rows, y, k, n, on_epoch: fit_tail(views.subset(rows), y, k, opt, n, on_epoch),
            embed=lambda tail: embed_views(tail, views) if tail is not None else _pooled_of(views, opt),
            # 0 epochs (the pretrained features with imprinted rows) is an option only without an embedding
            # layer, which would otherwise stay random.
            seed=opt.seed, allow_zero=opt.dim == 0, progress=progress)
        report["pseudo_novel_history"] = rounded_history(history)
    report["epochs"] = int(epochs)
    tail = fit_tail(views, labels, num_classes, opt, epochs if opt.dim == 0 else max(1, epochs), state_path=state_path)
    report.update(classifier_report(tail.classifier, embed_views(tail, views), labels))
    return tail, report


def _pooled_of(views: Views, opt: BlockOptions) -> np.ndarray:
    """Unit pooled pretrained features float32 (N, F) of the centre views: the 'no training' reference."""
    model = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    return embed_views(Tail(model, opt.trainable_blocks, 1, opt.scale_init).eval(), views)


def finetune_tail(tail: Tail, acts: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int, lr: float,
                  samples_per_epoch: int, batch: int = 64, seed: int = 0) -> Tail:
    """Imprinting+FT on the middle path: fine-tune a tail (its classifier already holds base and imprinted
    novel rows) on base + novel activations (N, V, C, h, w), every class sampled uniformly (the paper's
    oversampling of novel classes, Sec. 6.2). lr for the blocks, 10x for the new layers."""
    opt = FinetuneOptions(epochs=epochs, lr=lr, batch=batch, seed=seed)
    return train_balanced(tail, acts, labels, num_classes, opt, samples_per_epoch, tail.pretrained_parameters(),
                          tail.new_parameters())
