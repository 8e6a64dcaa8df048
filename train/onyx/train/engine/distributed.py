"""Data-parallel training under torchrun (DDP), and the single-process case as world size 1.

    torchrun --nproc-per-node 2 -m onyx train image data/ --device cpu    # gloo on CPU, nccl on GPU

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them nothing is initialised. Every rank
builds the same model from the same seed; DDP averages gradients, a DistributedSampler gives each
rank its share of every epoch; only rank 0 logs progress and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but torch sees no CUDA device")
        return torch.device("cuda", local_rank) if requested == "cuda" else torch.device(requested)
    if requested != "cpu":
        raise ValueError(f"unknown device {requested!r}; choose auto, cpu or cuda[:N]")
    return torch.device("cpu")


def setup(requested_device: str) -> DistContext:
    """Join the torchrun process group when launched by torchrun; else a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size <= 1:
        return DistContext(device=device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return DistContext(dist.get_rank(), world_size, device)


def wrap(model: nn.Module, context: DistContext) -> nn.Module:
    if not context.enabled:
        return model
    ids = [context.device.index] if context.device.type == "cuda" else None
    # DDP registers gradient hooks only for parameters that require gradients when it is built:
    # call `wrap` again whenever the transfer schedule freezes or unfreezes stages.
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()


def teardown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
