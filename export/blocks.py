"""Base training, middle CPU path: fine-tune the last backbone blocks on cached activations.

The frozen early blocks run once per view (the centre crop and random crops/flips) and their output
activations are cached; each epoch then runs only the last `trainable_blocks` MBConv blocks, the 1x1 head
convolution, the pool, the embedding layer and the cosine classifier. On Lite0 at 224 px the last two
blocks see 192 x 7 x 7 activations, so an epoch over CUB's 3,000 base images costs a fraction of a
full-network epoch. BatchNorm statistics stay frozen (the pretrained running means), which is the usual
choice for fine-tuning on a few thousand images.

The paper's optimizer (RMSProp, momentum 0.9, x0.94 every 4 epochs) with its learning-rate split: pretrained
layers at `lr`, new layers (embedding, classifier) at 10x. Epochs are chosen by the same pseudo-novel
check as the fast path (`train.choose_epochs`): the number of epochs that serves held-out base classes
imprinted from 1 and 5 shots best, not the one with the best base accuracy.

With trainable_blocks >= 16 the whole network trains (the paper's recipe): the "activations" are the
images themselves, decoded with a fresh random crop and flip at every access (`image_views.ImageViews`),
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

from .model import CosineClassifier, ImprintExtractor, imprint_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockOptions:
    """trainable_blocks: how many of the backbone's last MBConv blocks are fine-tuned (with the head conv).
    dim: embedding size (0: the pooled features). lr: pretrained layers; new layers (embedding, classifier)
    get new_lr_factor x lr (the paper: 10). imprint_init starts the classifier from imprinted rows."""

    trainable_blocks: int = 2
    dim: int = 0
    lr: float = 1e-5
    batch: int = 64
    max_epochs: int = 6
    epochs: int | None = None
    weight_decay: float = 1e-4
    scale_init: float = 10.0
    imprint_init: bool = True
    new_lr_factor: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trainable_blocks < 1:
            raise ValueError(f"trainable_blocks must be >= 1 (0 is the frozen-backbone path), got {self.trainable_blocks}")
        if self.dim < 0 or self.batch < 1 or not self.lr > 0:
            raise ValueError("dim must be >= 0, batch >= 1 and lr positive")
        if self.max_epochs < 1 or (self.epochs is not None and self.epochs < 0):
            raise ValueError("max_epochs must be >= 1 and epochs >= 0")


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


def _device() -> torch.device:
    """This process's device: its GPU under torchrun (LOCAL_RANK) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def fit_tail(acts: np.ndarray, labels: np.ndarray, num_classes: int, opt: BlockOptions, epochs: int,
             on_epoch=None, state_path: Path | None = None) -> Tail:
    """Train a fresh pretrained model's tail on cached activations float16 (N, V, C, h, w) for `epochs`;
    on_epoch(epoch, tail) after each. Returns the tail (its .model is the trained extractor).

    state_path: after every epoch rank 0 writes the training state there (weights, optimizer, schedule,
    data-order generator; loads with weights_only=True); if the file exists at the start, training resumes
    after its last finished epoch, drawing the same batches an uninterrupted run would have."""
    from .model import ExtractorConfig

    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)  # the same stream on every rank: same order, same views
    model = ImprintExtractor(ExtractorConfig(embedding_dim=opt.dim))
    tail = Tail(model, opt.trainable_blocks, num_classes, opt.scale_init)
    if opt.imprint_init:
        # Start the classifier from imprinted rows (the paper's own idea): random rows send large gradients
        # into the pretrained blocks and wreck them for the first epochs (measured: the pseudo-novel score
        # fell from 45.7% to 26.7% after one epoch with random rows on CUB).
        emb = embed_activations(tail.eval(), acts[:, 0])
        with torch.no_grad():
            tail.classifier.weight.copy_(imprint_weights(torch.from_numpy(emb), torch.from_numpy(labels), num_classes))
    rank, world = _world()
    device = _device()
    tail.to(device)
    net: nn.Module = tail
    if world > 1:
        net = nn.parallel.DistributedDataParallel(tail, device_ids=[device.index] if device.type == "cuda" else None)
    optim = torch.optim.RMSprop(
        [{"params": tail.pretrained_parameters(), "lr": opt.lr}, {"params": tail.new_parameters(), "lr": opt.new_lr_factor * opt.lr}],
        lr=opt.lr, momentum=0.9, weight_decay=opt.weight_decay,
    )
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=4, gamma=0.94)
    y_all = torch.from_numpy(labels.astype(np.int64))
    step = opt.batch * world
    start = 0
    if state_path is not None and Path(state_path).is_file():
        start = _load_state(Path(state_path), tail, optim, sched, rng, opt, epochs)
    for epoch in range(start, epochs):
        tail.train()
        order = rng.permutation(len(labels))
        view = rng.integers(0, acts.shape[1], len(labels))
        # Whole global batches only, so every rank runs the same number of steps.
        starts = range(0, len(order) - step + 1 if len(order) >= step else 1, step)
        for i in tqdm(starts, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False, disable=rank != 0):
            idx = order[i : i + step][rank::world]
            x = torch.from_numpy(acts[idx, view[idx]].astype(np.float32)).to(device)
            loss = F.cross_entropy(net(x), y_all[idx].to(device))
            optim.zero_grad()
            loss.backward()
            optim.step()
        sched.step()
        if state_path is not None and rank == 0:
            _save_state(Path(state_path), tail, optim, sched, rng, opt, epoch + 1)
        if on_epoch is not None:
            on_epoch(epoch + 1, tail.eval())
        log.info("epoch %d of %d done", epoch + 1, epochs)
    return tail.eval().cpu()


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


def embed_activations(tail: Tail, acts: np.ndarray, chunk: int = 128) -> np.ndarray:
    """Unit embeddings float32 (N, D) of activations (N, C, h, w), in chunks to bound memory."""
    out = []
    device = next(tail.parameters()).device
    with torch.inference_mode():
        for i in range(0, len(acts), chunk):
            x = torch.from_numpy(acts[i : i + chunk].astype(np.float32)).to(device)
            out.append(tail.embedding(x).cpu().numpy())
    return np.concatenate(out)


def train_blocks(acts: np.ndarray, labels: np.ndarray, num_classes: int, opt: BlockOptions,
                 progress=None, state_path: Path | None = None) -> tuple[Tail, dict]:
    """The middle path: (the trained tail, a report). acts float16 (N, V, C, h, w), view 0 the centre
    crop; labels int (N,). Epochs are chosen by the pseudo-novel check unless opt.epochs is set.
    state_path makes the final training resumable (see fit_tail); the epoch search is not."""
    from .train import pseudo_novel_split, pseudo_novel_score

    report: dict = {}
    epochs = opt.epochs
    if epochs is None:
        seen, held, train = pseudo_novel_split(labels, opt.seed)
        remap = {c: k for k, c in enumerate(seen)}
        y = np.array([remap[c] for c in labels[train]])
        history = {0: pseudo_novel_score(None, _pooled_of(acts, opt), labels, seen, held)}

        def on_epoch(epoch: int, tail: Tail) -> None:
            history[epoch] = pseudo_novel_score(tail, acts, labels, seen, held, embed=embed_activations)
            log.info("epoch %d: pseudo-novel %.4f", epoch, history[epoch])
            if progress:
                progress(epoch, history[epoch])

        fit_tail(acts[train], y, len(seen), opt, opt.max_epochs, on_epoch)
        # 0 epochs (the pretrained features with imprinted rows) is an option only without an embedding
        # layer, which would otherwise stay random.
        epochs = max((e for e in history if e > 0 or opt.dim == 0), key=lambda e: (round(history[e], 4), -e))
        report["pseudo_novel_history"] = {int(k): round(v, 4) for k, v in history.items()}
    report["epochs"] = int(epochs)
    tail = fit_tail(acts, labels, num_classes, opt, epochs if opt.dim == 0 else max(1, epochs), state_path=state_path)
    emb = embed_activations(tail, acts[:, 0])
    with torch.no_grad():
        pred = tail.classifier(torch.from_numpy(emb)).argmax(1).numpy()
    report["train_top1"] = float((pred == labels).mean())
    report["scale"] = float(tail.classifier.scale.detach())
    return tail, report


def _pooled_of(acts: np.ndarray, opt: BlockOptions) -> np.ndarray:
    """Pooled pretrained features (N, 1, F) of the centre views: the 'no training' reference score."""
    from .model import ExtractorConfig

    model = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    tail = Tail(model, opt.trainable_blocks, 1, opt.scale_init).eval()
    return embed_activations(tail, acts[:, 0])[:, None]


def init_distributed() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); True if distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    log.info("distributed training: rank %d of %d (%s)", torch.distributed.get_rank(),
             torch.distributed.get_world_size(), backend)
    return True


def finetune_tail(tail: Tail, acts: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int, lr: float,
                  samples_per_epoch: int, batch: int = 64, seed: int = 0) -> Tail:
    """Imprinting+FT on the middle path: fine-tune a tail (its classifier already holds base and imprinted
    novel rows) on base + novel activations (N, V, C, h, w), every class sampled uniformly (the paper's
    oversampling of novel classes, Sec. 6.2). lr for the blocks, 10x for the new layers."""
    from .finetune import FinetuneOptions, _train

    groups = [{"params": tail.pretrained_parameters(), "lr": lr}, {"params": tail.new_parameters(), "lr": 10 * lr}]
    return _train(tail, acts, labels, num_classes, FinetuneOptions(epochs=epochs, lr=lr, batch=batch, seed=seed),
                  samples_per_epoch, groups)
