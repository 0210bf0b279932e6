"""The SuPreM U-Net: Models Genesis' 3D U-Net (Zhou et al. 2019) as an nnU-Net network.

Four levels; level d runs two conv(3x3x3, bias) + batch norm + ReLU units with widths
w*2^d -> w*2^(d+1) (w = `base_features`, 32 in the paper: 1->32->64, 64->64->128, 128->128->256,
256->256->512), max-pooling between levels; three decoder levels each up-sample with a 2x2x2
transposed conv that keeps the channel count, concatenate the skip, and run two units; a 1x1x1
conv gives the logits. Module names follow the release (``down_tr64.ops.0.conv1`` ...,
``up_tr256.up_conv``, ``out_tr.final_conv``) so released keys load by name.

`batch_stats_always=True` reproduces the release's batch norm (``ContBatchNorm3d``): it normalises
with the statistics of the current batch also in eval mode, so running statistics never affect the
output (they are still tracked during training, to keep the state dict complete).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .memory import MemoryModelMixin, check_no_deep_supervision
from .registry import BACKBONES
from ..errors import InputError


class BatchStatsBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d that always normalises with batch statistics, in train and in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise InputError(f"expected a 5D input (B, C, D, H, W), got shape {tuple(x.shape)}")
        track = self.training and self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, True, self.momentum or 0.1, self.eps)


class ConvUnit(nn.Module):
    """conv 3x3x3 (bias) -> batch norm -> ReLU; names ``conv1`` / ``bn1`` as in the release."""

    def __init__(self, in_ch: int, out_ch: int, batch_stats_always: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, out_ch, kernel_size=3, padding=1)
        self.bn1 = (BatchStatsBatchNorm3d if batch_stats_always else nn.BatchNorm3d)(out_ch)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn1(self.conv1(x)))


class DownLevel(nn.Module):
    """Two units; the output is pooled by the next level (returns pre-pool features)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, batch_stats_always: bool) -> None:
        super().__init__()
        self.ops = nn.Sequential(ConvUnit(in_ch, mid_ch, batch_stats_always),
                                 ConvUnit(mid_ch, out_ch, batch_stats_always))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops(x)


class UpLevel(nn.Module):
    """Transposed conv (channels kept), concatenation with the skip, two units."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, batch_stats_always: bool) -> None:
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(in_ch, in_ch, kernel_size=2, stride=2)
        self.ops = nn.Sequential(ConvUnit(in_ch + skip_ch, out_ch, batch_stats_always),
                                 ConvUnit(out_ch, out_ch, batch_stats_always))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ops(torch.cat((self.up_conv(x), skip), 1))


class OutputLayer(nn.Module):
    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.final_conv = nn.Conv3d(in_ch, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(x)


class SuPreMUNet3D(MemoryModelMixin, nn.Module):
    """SuPreM / Models Genesis 3D U-Net adapter (19,073,600 backbone parameters at w=32)."""

    # where the parts are, as the registry declares them (registry.py: pure data, one place)
    head_keys: Tuple[str, ...] = BACKBONES["unet"].head_keys
    encoder_keys: Tuple[str, ...] = BACKBONES["unet"].encoder_keys
    divisible_by: int = BACKBONES["unet"].divisible_by
    reference_patch = (96, 96, 96)

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 base_features: int = 32, batch_stats_always: bool = True) -> None:
        super().__init__()
        check_no_deep_supervision(type(self).__name__, deep_supervision)
        if base_features < 1:
            raise InputError(f"base_features must be >= 1, got {base_features}")
        w, b = base_features, batch_stats_always
        self.base_features = w
        self.down_tr64 = DownLevel(input_channels, w, 2 * w, b)
        self.down_tr128 = DownLevel(2 * w, 2 * w, 4 * w, b)
        self.down_tr256 = DownLevel(4 * w, 4 * w, 8 * w, b)
        self.down_tr512 = DownLevel(8 * w, 8 * w, 16 * w, b)
        self.up_tr256 = UpLevel(16 * w, 8 * w, 8 * w, b)
        self.up_tr128 = UpLevel(8 * w, 4 * w, 4 * w, b)
        self.up_tr64 = UpLevel(4 * w, 2 * w, 2 * w, b)
        self.out_tr = OutputLayer(2 * w, num_classes)
        self.pool = nn.MaxPool3d(2)

    @property
    def bottleneck_channels(self) -> int:
        return 16 * self.base_features

    @property
    def decoder_channels(self) -> int:
        return 2 * self.base_features

    def features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(bottleneck features at 1/8 resolution, last decoder features at full resolution)."""
        self.check_patch_size(x.shape[2:])
        s64 = self.down_tr64(x)
        s128 = self.down_tr128(self.pool(s64))
        s256 = self.down_tr256(self.pool(s128))
        bottom = self.down_tr512(self.pool(s256))
        y = self.up_tr256(bottom, s256)
        y = self.up_tr128(y, s128)
        return bottom, self.up_tr64(y, s64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_tr(self.features(x)[1])
