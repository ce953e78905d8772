"""Devices, precision and multi-process (DDP) context for training and evaluation.

A run started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment, WORLD_SIZE > 1)
joins a process group: NCCL on CUDA, gloo on CPU. Each process drives the device
`cuda:LOCAL_RANK` (or the CPU). Only rank 0 writes files; metrics are summed across ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fgnet_video.errors import UserError
from fgnet_video.inference.devices import resolve_device


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def context_from_env() -> DistContext:
    """The process's place in a torchrun launch (a single process when not launched so)."""
    world_size = _env_int("WORLD_SIZE", 1)
    return DistContext(
        rank=_env_int("RANK", 0) if world_size > 1 else 0,
        world_size=world_size,
        local_rank=_env_int("LOCAL_RANK", 0) if world_size > 1 else 0,
    )


def pick_device(request: str, ctx: DistContext) -> torch.device:
    """The device of `--device auto|cpu|cuda[:i]`; under DDP a bare 'cuda' is cuda:LOCAL_RANK."""
    device = resolve_device(request)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", ctx.local_rank)
    return device


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    """Join the torchrun process group (no-op for a single process)."""
    if not ctx.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of `tensor` over all ranks (the tensor itself when single-process)."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_state(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers (BatchNorm statistics) to every rank."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor, src=0)
