"""MONAI SegResNet as an nnU-Net network, configured as SuPreM's SegResNet release.

SuPreM built ``SegResNet(blocks_down=[1,2,2,4], blocks_up=[1,1,1], init_filters=16, in_channels=1,
out_channels=N, dropout_prob=0.0)``; this adapter keeps MONAI's module names, so the released keys
load after stripping ``module.``. 4,701,424 parameters at N = 32. Normalisation is GroupNorm(8), so
`init_filters` must be a multiple of 8 (8 is the tiny width for CPU tests).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from monai.networks.nets import SegResNet

from .memory import MemoryModelMixin, check_no_deep_supervision
from .registry import BACKBONES
from ..errors import InputError


class SuPreMSegResNet(MemoryModelMixin, SegResNet):
    """SegResNet adapter; head ``conv_final.2.conv`` (a 1x1x1 conv with bias)."""

    # where the parts are, as the registry declares them (registry.py: pure data, one place)
    head_keys: Tuple[str, ...] = BACKBONES["segresnet"].head_keys
    encoder_keys: Tuple[str, ...] = BACKBONES["segresnet"].encoder_keys
    divisible_by: int = BACKBONES["segresnet"].divisible_by
    reference_patch = (96, 96, 96)

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 init_filters: int = 16, blocks_down: Sequence[int] = (1, 2, 2, 4),
                 blocks_up: Sequence[int] = (1, 1, 1), dropout_prob: float | None = None,
                 num_groups: int = 8) -> None:
        check_no_deep_supervision(type(self).__name__, deep_supervision)
        if init_filters % num_groups:
            raise InputError(f"init_filters ({init_filters}) must be a multiple of num_groups "
                             f"({num_groups}) for GroupNorm")
        if len(blocks_up) != len(blocks_down) - 1:
            raise InputError(f"blocks_up needs len(blocks_down) - 1 = {len(blocks_down) - 1} entries, "
                             f"got {list(blocks_up)}")
        super().__init__(spatial_dims=3, init_filters=init_filters, in_channels=input_channels,
                         out_channels=num_classes, dropout_prob=dropout_prob,
                         norm=("GROUP", {"num_groups": num_groups}), num_groups=num_groups,
                         blocks_down=tuple(blocks_down), blocks_up=tuple(blocks_up))
        self.divisible_by = 2 ** (len(blocks_down) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bad = [int(s) for s in x.shape[2:] if int(s) % self.divisible_by]
        if bad:
            raise InputError(f"{type(self).__name__}: input sides {bad} of {tuple(x.shape[2:])} are "
                             f"not multiples of {self.divisible_by}")
        return super().forward(x)
