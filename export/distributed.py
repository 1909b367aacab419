"""Data-parallel training under `torchrun`: joining and leaving the process group, this process's rank and
device. Without torchrun (WORLD_SIZE unset or 1) every function answers for a single process."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def init_distributed() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); True if distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    log.info("distributed training: rank %d of %d (%s)", torch.distributed.get_rank(),
             torch.distributed.get_world_size(), backend)
    return True


def close_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, how many processes train): (0, 1) outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def local_device() -> torch.device:
    """This process's device: its GPU under torchrun (LOCAL_RANK) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
