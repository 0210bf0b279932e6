"""Training-memory model of the fixed-topology adapters, measured without computing anything.

The network is built once on the CPU, moved to PyTorch's ``meta`` device (shapes only, no data) and
run forward on a meta input of the requested patch; a ``saved_tensors_hooks`` context records every
tensor autograd keeps for the backward pass. Their total size is the activation memory of one
training step (a slight over-estimate: a tensor saved by two ops as two views counts twice). The
planner adds parameters, gradients and optimizer state (`parameter_bytes`) and its own margin for
allocator fragmentation and cuDNN workspaces.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Dict, Sequence, Tuple, Type

import torch
from torch import nn
from ..errors import InputError

#: bytes per parameter during training: weights + gradients + SGD momentum (nnU-Net's optimiser).
#: Adam keeps one more moment: use 16.
TRAIN_BYTES_PER_PARAM = 12


def saved_activation_bytes(network: nn.Module, input_shape: Sequence[int]) -> int:
    """Bytes of the tensors autograd saves for backward in one forward of `network` on `input_shape`.

    `network` must live on the meta device (see `measure`); nothing is computed.
    """
    sizes: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes[id(t)] = t.numel() * t.element_size()
        return t

    x = torch.empty(tuple(input_shape), device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = network(x)
    # the logits themselves are kept by the loss
    return sum(sizes.values()) + out.numel() * out.element_size()


def _kwargs_key(kwargs: Dict) -> str:
    return json.dumps(kwargs, sort_keys=True, default=str)


@lru_cache(maxsize=64)
def _measure(cls: Type[nn.Module], kwargs_key: str, patch: Tuple[int, ...], batch: int,
             in_ch: int, n_cls: int) -> Tuple[int, int]:
    kwargs = json.loads(kwargs_key)
    net = cls(input_channels=in_ch, num_classes=n_cls, deep_supervision=False, **kwargs)
    n_params = sum(p.numel() for p in net.parameters())
    net = net.to("meta").train()
    return saved_activation_bytes(net, (batch, in_ch, *patch)), n_params


def measure(cls: Type[nn.Module], patch_size: Sequence[int], batch_size: int = 1,
            input_channels: int = 1, num_classes: int = 32, **arch_kwargs) -> Tuple[int, int]:
    """(activation bytes, parameter count) of `cls(**arch_kwargs)` training on one batch (cached)."""
    return _measure(cls, _kwargs_key(arch_kwargs), tuple(int(s) for s in patch_size),
                    int(batch_size), int(input_channels), int(num_classes))


class MemoryModelMixin:
    """Planner-facing memory model for an adapter class (mixed into each adapter)."""

    #: patch at which `activation_bytes_per_voxel` is measured (a multiple of `divisible_by`)
    reference_patch: Tuple[int, int, int] = (96, 96, 96)
    divisible_by: int = 1
    #: smallest usable side (Swin: instance norm needs more than one voxel at 1/32 resolution)
    min_patch_side: int = 1

    @classmethod
    def activation_bytes_per_voxel(cls, input_channels: int = 1, num_classes: int = 32,
                                   **arch_kwargs) -> float:
        """Activation bytes per input voxel (batch 1, fp32) measured at `reference_patch`."""
        act, _ = measure(cls, cls.reference_patch, 1, input_channels, num_classes, **arch_kwargs)
        n_vox = cls.reference_patch[0] * cls.reference_patch[1] * cls.reference_patch[2]
        return act / n_vox

    @classmethod
    def training_memory_bytes(cls, patch_size: Sequence[int], batch_size: int = 1,
                              input_channels: int = 1, num_classes: int = 32,
                              bytes_per_param: int = TRAIN_BYTES_PER_PARAM, **arch_kwargs) -> int:
        """Activations at this exact patch and batch plus parameter/gradient/optimizer memory (fp32).

        Mixed precision roughly halves the activation part; no allocator margin is included.
        """
        cls.check_patch_size(patch_size)
        act, n_params = measure(cls, patch_size, batch_size, input_channels, num_classes, **arch_kwargs)
        return act + n_params * bytes_per_param

    @classmethod
    def check_patch_size(cls, patch_size: Sequence[int]) -> None:
        """ValueError naming the offending sides unless every side is a multiple of `divisible_by`
        and at least `min_patch_side`."""
        size = tuple(int(s) for s in patch_size)
        bad = [s for s in size if s <= 0 or s % cls.divisible_by]
        if bad:
            raise InputError(f"{cls.__name__}: patch size {size} has sides {bad} that are not positive "
                             f"multiples of {cls.divisible_by}")
        small = [s for s in size if s < cls.min_patch_side]
        if small:
            raise InputError(f"{cls.__name__}: patch size {size} has sides {small} below the minimum "
                             f"{cls.min_patch_side}")


def check_no_deep_supervision(cls_name: str, deep_supervision: bool) -> None:
    """The adapters return plain logits; asking for deep supervision is a configuration error."""
    if deep_supervision:
        raise InputError(f"{cls_name} has no deep-supervision outputs; build it with "
                         f"deep_supervision=False (trainer: enable_deep_supervision = False)")
