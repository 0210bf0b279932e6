"""Multi-process (DDP) training: process group, device per rank, the network wrapper, gathered sums.

nnunetv2 2.8.1 takes DDP from an initialised process group and then (a) forces `cuda:<rank>`,
(b) converts every BatchNorm to SyncBatchNorm and (c) wraps with `DDP(device_ids=[rank])`. Here:

* the backend follows the device: NCCL on CUDA GPUs, gloo on CPU (`--device cpu` under torchrun),
  and each process takes the GPU of its *local* rank (LOCAL_RANK, right on several nodes too);
* `prepare_network` converts only plain `nn.BatchNorm*d` layers, and only on GPUs (torch's
  SyncBatchNorm has no CPU kernel). A BatchNorm subclass with its own forward keeps it: the SuPreM
  U-Net's batch-statistics BN (networks/unet3d.py) normalises with each GPU's own batch, as the
  release trained it (DDP without SyncBatchNorm); converting it would also lose its eval-mode
  behaviour. None of the registered networks has a plain BatchNorm today (nnU-Net's U-Nets and
  SwinUNETR use instance/layer norm, SegResNet group norm), so nnU-Net's conversion is a no-op for
  them either way; it is kept for any network that has one.
* `gathered_sum` sums a tensor over all ranks with gradients, as nnU-Net's batch Dice does
  (`AllGatherGrad`): every rank gets the global value, and since DDP averages the gradients of the
  ranks, the resulting step equals the single-process step on the concatenated batch.
"""
from __future__ import annotations

import atexit
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import distributed as dist
from torch import nn
from ..errors import InputError

log = logging.getLogger(__name__)

#: nnU-Net's BatchNorm classes that become SyncBatchNorm under DDP (exact types, not subclasses)
PLAIN_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def launched_world_size() -> int:
    """Processes torchrun started (WORLD_SIZE), 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA GPUs, gloo for CPU; other devices cannot run DDP here."""
    if device.type == "cuda":
        return "nccl"
    if device.type == "cpu":
        return "gloo"
    raise InputError(f"multi-process (DDP) training runs on cuda (NCCL) or cpu (gloo), not on {device.type}")


def rank_device(device: torch.device) -> torch.device:
    """The device of this process: `cuda:LOCAL_RANK` on GPUs, the CPU otherwise."""
    if device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _destroy_at_exit() -> None:
    if is_distributed():
        dist.destroy_process_group()


def join_if_launched(device: torch.device) -> torch.device:
    """Join the process group when torchrun started several processes (idempotent) and return this
    process's device. The group is destroyed at interpreter exit unless `process_group` did it."""
    if launched_world_size() <= 1:
        return device
    if not is_distributed():
        backend = backend_for(device)
        if device.type == "cuda":
            torch.cuda.set_device(rank_device(device))
        dist.init_process_group(backend)
        atexit.register(_destroy_at_exit)
        log.info("rank %d of %d joined the process group (%s, %s)", dist.get_rank(), dist.get_world_size(),
                 backend, rank_device(device))
    return rank_device(device)


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """`join_if_launched`, and destroy the group when the block ends, also on an error."""
    try:
        yield join_if_launched(device)
    finally:
        _destroy_at_exit()


def check_world_size(plans_file: Path, configuration: str, configuration_plans: dict, world: int) -> None:
    """One-line ValueError when the plans were made for another number of processes than torchrun
    started (plans without `num_gpus` are for one). Run before nnU-Net asserts global batch >= world size."""
    planned = int(configuration_plans.get("num_gpus", 1))
    if planned == world:
        return
    batch = configuration_plans.get("batch_size")
    how = (f"torchrun started {world} processes" if world > 1 else "this is a single process (no torchrun)")
    raise InputError(f"{plans_file}: configuration {configuration!r} was planned for {planned} GPU(s) "
                     f"(global batch {batch}) but {how}; re-plan with suprem_plan_and_preprocess --num-gpus "
                     f"{world} (same other options)" + (f" or launch torchrun --nproc_per_node {planned}"
                                                         if planned > 1 else ""))


def convert_plain_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every plain BatchNorm (exact nn.BatchNorm1d/2d/3d) replaced by SyncBatchNorm;
    subclasses (the U-Net's batch-statistics BN) are left as they are."""
    if type(module) in PLAIN_BATCHNORMS:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        new = convert_plain_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def prepare_network(network: nn.Module, device: torch.device) -> nn.Module:
    """nnU-Net's SyncBatchNorm conversion where it is possible and wanted (see the module docstring)."""
    return convert_plain_batchnorm(network) if device.type == "cuda" else network


def wrap(network: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """DDP over the parameters that currently require gradients (rebuild it after freezing some)."""
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(network, device_ids=ids)


def gathered_sum(x: torch.Tensor, group: Optional[dist.ProcessGroup] = None) -> torch.Tensor:
    """Sum of `x` over all ranks with gradients (every rank must call it with the same shape)."""
    from nnunetv2.utilities.ddp_allgather import AllGatherGrad

    return AllGatherGrad.apply(x.contiguous(), group).sum(0)


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. preprocessing that writes files), the other ranks after it
    has finished (then typically finding the work done); a plain block without DDP."""
    if is_distributed() and dist.get_rank() != 0:
        dist.barrier()
    try:
        yield
    finally:
        if is_distributed() and dist.get_rank() == 0:
            dist.barrier()
