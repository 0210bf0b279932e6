"""MONAI SwinUNETR as an nnU-Net network, with the patch merging the SuPreM release was trained with.

Patch merging concatenates, for each 2x2x2 block of tokens, the eight neighbours at offsets
(d, h, w) in {0,1}^3 along the channel axis before a LayerNorm and a linear reduction. The order
of that concatenation is baked into the weights:

* ``"v0.9"`` -- MONAI 0.9 and SuPreM's vendored copy (``backbone/swinunetr.py`` at SuPreM commit
  df1f438, identical in ``supervised_pretraining/backbone/SwinUNETR.py``):
  (0,0,0) (1,0,0) (0,1,0) (0,0,1) (1,0,1) (0,1,0) (0,0,1) (1,1,1): offsets (0,1,0) and (0,0,1) are
  read twice, (1,1,0) and (0,1,1) never. The released weights expect this order.
* ``"monai"`` -- MONAI >= 1.x ``downsample="merging"``:
  (0,0,0) (1,0,0) (0,1,0) (0,0,1) (1,1,0) (1,0,1) (0,1,1) (1,1,1).
* ``"mergingv2"`` -- MONAI ``PatchMergingV2``: itertools.product order (d slowest).

Module names are MONAI's, so released keys load after stripping ``module.backbone.``. Every patch
side must be a multiple of 32 (five 2x down-samplings) and at least 64 (the
instance norm of the 1/32-resolution bottleneck needs more than one voxel).
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
from monai.networks.nets.swin_unetr import PatchMerging, PatchMergingV2, SwinUNETR
from torch.nn import functional as F

from .memory import MemoryModelMixin, check_no_deep_supervision
from .registry import BACKBONES
from ..errors import InputError

Offsets = Tuple[Tuple[int, int, int], ...]

#: neighbour order of MONAI 0.9 / the SuPreM release (two offsets repeated, two skipped)
RELEASE_MERGE_OFFSETS: Offsets = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1),
                                  (1, 0, 1), (0, 1, 0), (0, 0, 1), (1, 1, 1))
#: neighbour order of MONAI >= 1.x "merging"
MONAI_MERGE_OFFSETS: Offsets = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1),
                                (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1))


def merge_neighbours(x: torch.Tensor, offsets: Offsets) -> torch.Tensor:
    """Concatenate the 2x2x2 neighbours of channels-last `x` (B, D, H, W, C) in `offsets` order.

    Odd sides are zero-padded at the end. Returns (B, ceil(D/2), ceil(H/2), ceil(W/2), 8C).
    """
    if x.dim() != 5:
        raise InputError(f"expected a channels-last 5D tensor (B, D, H, W, C), got {tuple(x.shape)}")
    d, h, w = x.shape[1:4]
    if d % 2 or h % 2 or w % 2:
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2, 0, d % 2))
    return torch.cat([x[:, i::2, j::2, k::2, :] for i, j, k in offsets], -1)


class ReleasePatchMerging(PatchMergingV2):
    """Patch merging in the MONAI 0.9 / SuPreM-release neighbour order (same parameters as MONAI's)."""

    offsets: Offsets = RELEASE_MERGE_OFFSETS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            return super().forward(x)
        return self.reduction(self.norm(merge_neighbours(x, self.offsets)))


PATCH_MERGING: Dict[str, type] = {"v0.9": ReleasePatchMerging, "monai": PatchMerging,
                                  "mergingv2": PatchMergingV2}


class SuPreMSwinUNETR(MemoryModelMixin, SwinUNETR):
    """SwinUNETR adapter (62,186,610 backbone parameters at feature_size 48); head ``out.conv.conv``."""

    # where the parts are, as the registry declares them (registry.py: pure data, one place)
    head_keys: Tuple[str, ...] = BACKBONES["swinunetr"].head_keys
    encoder_keys: Tuple[str, ...] = BACKBONES["swinunetr"].encoder_keys
    divisible_by: int = BACKBONES["swinunetr"].divisible_by
    min_patch_side: int = 64  # at 32 the bottleneck is 1 voxel and instance norm fails
    reference_patch = (96, 96, 96)

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 feature_size: int = 48, patch_merging: str = "v0.9",
                 depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 dropout_path_rate: float = 0.0,
                 use_checkpoint: bool = False) -> None:
        check_no_deep_supervision(type(self).__name__, deep_supervision)
        if patch_merging not in PATCH_MERGING:
            raise InputError(f"patch_merging must be one of {sorted(PATCH_MERGING)}, got {patch_merging!r}")
        if feature_size % 12:
            raise InputError(f"feature_size must be a multiple of 12, got {feature_size}")
        super().__init__(in_channels=input_channels, out_channels=num_classes, feature_size=feature_size,
                         depths=tuple(depths), num_heads=tuple(num_heads), window_size=window_size,
                         drop_rate=drop_rate,
                         attn_drop_rate=attn_drop_rate, dropout_path_rate=dropout_path_rate,
                         use_checkpoint=use_checkpoint, spatial_dims=3,
                         downsample=PATCH_MERGING[patch_merging])
        self.feature_size = feature_size
        self.patch_merging = patch_merging

    @property
    def bottleneck_channels(self) -> int:
        return 16 * self.feature_size

    @property
    def decoder_channels(self) -> int:
        return self.feature_size

    def features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(bottleneck ``encoder10`` output at 1/32 resolution, ``decoder1`` output at full resolution)."""
        self.check_patch_size(x.shape[2:])
        hidden = self.swinViT(x, self.normalize)
        enc0 = self.encoder1(x)
        enc1 = self.encoder2(hidden[0])
        enc2 = self.encoder3(hidden[1])
        enc3 = self.encoder4(hidden[2])
        bottom = self.encoder10(hidden[4])
        y = self.decoder5(bottom, hidden[3])
        y = self.decoder4(y, enc3)
        y = self.decoder3(y, enc2)
        y = self.decoder2(y, enc1)
        return bottom, self.decoder1(y, enc0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x)[1])
