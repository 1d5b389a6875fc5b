"""torchrun data parallelism: process group setup and gradient averaging.

Gradients are averaged with one all-reduce of a flattened buffer per phase
rather than through the DistributedDataParallel wrapper, because objectives call
submodules directly (encoder, generator, discriminator...) and a multi-phase step
updates different parameters each phase: DDP's forward hooks would see neither.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from genlab.errors import InputError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


DEVICES_HELP = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for ``--device NAME``; a ValueError naming the choices when it is unknown or absent."""
    name = str(name).strip()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    # Only the devices genlab runs on: torch also parses "meta", "xla"... which fail later, deep inside.
    match = re.fullmatch(r"(cpu|mps)|cuda(?::(\d+))?", name)
    if match is None:
        raise InputError(f"unknown device {name!r}: use {DEVICES_HELP}")
    if match.group(1):
        if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise InputError("device 'mps' asked for, but MPS is not available here: use --device cpu")
        return torch.device(name)
    if not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but CUDA is not available here: use --device cpu")
    index = local_rank if match.group(2) is None else int(match.group(2))
    count = torch.cuda.device_count()
    if index >= count:
        raise InputError(f"device {name!r} asked for, but this machine has {count} CUDA device(s) "
                         f"(cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if WORLD_SIZE > 1; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return DistInfo(rank, world, local_rank), device


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Replace each gradient by its mean over processes (one flat all-reduce)."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(info.world)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(module: torch.nn.Module, info: DistInfo) -> None:
    """Make every process start from rank 0's weights and buffers."""
    if not info.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def any_process(flag: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """A 0-d bool tensor, on ``flag``'s device: whether ``flag`` (0-d bool) is true on any process.
    Nothing is read on the host, so the caller decides whether to wait for it."""
    if not info.enabled:
        return flag.reshape(())
    value = flag.float().reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value.reshape(()) > 0
