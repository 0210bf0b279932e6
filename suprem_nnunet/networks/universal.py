"""The class head of the CLIP-driven Universal Model, as used by the SuPreM U-Net and Swin releases.

Per class k of K (32 in the releases, template order 1 spleen ... 32 kidney_cyst):

* task code   t_k = ReLU(text_to_vision(organ_embedding[k]))                       (256)
* image code  g   = GAP(bottleneck): GroupNorm(16) -> ReLU -> global mean -> 1x1x1 conv (256)
* parameters  p_k = controller([g, t_k])  -> 153 numbers = weights 8x8, 8x8, 1x8 then biases 8, 8, 1
* features    f   = precls_conv(last decoder features): GroupNorm(16) -> ReLU -> 1x1x1 conv to 8
* logit_k     = conv(p_k layer 3) o ReLU o conv(layer 2) o ReLU o conv(layer 1) applied to f

Outputs are K independent sigmoid logits (multi-label). Module and buffer names equal the release
(``organ_embedding``, ``backbone.*``, ``precls_conv``, ``GAP``, ``controller``, ``text_to_vision``), so
a release state dict loads by name after stripping ``module.``.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from ..errors import InputError

#: sizes of the dynamic head: weights of layers 1..3 then biases of layers 1..3
DYNAMIC_WEIGHT_NUMS: Tuple[int, ...] = (8 * 8, 8 * 8, 8 * 1)
DYNAMIC_BIAS_NUMS: Tuple[int, ...] = (8, 8, 1)
HEAD_CHANNELS = 8
EMBEDDING_DIM = 512


class UniversalModel(nn.Module):
    """Backbone with ``features(x) -> (bottleneck, decoder)`` plus the Universal-Model class head.

    The backbone's own plain head (``out_tr`` / ``out``) is removed: the release has none.
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 32) -> None:
        super().__init__()
        for attr in ("features", "bottleneck_channels", "decoder_channels"):
            if not hasattr(backbone, attr):
                raise TypeError(f"{type(backbone).__name__} has no {attr!r}; it cannot drive a "
                                f"Universal-Model head")
        for head in ("out_tr", "out"):
            if isinstance(getattr(backbone, head, None), nn.Module):
                delattr(backbone, head)
        dec_ch, bot_ch = backbone.decoder_channels, backbone.bottleneck_channels
        for name, ch in (("decoder", dec_ch), ("bottleneck", bot_ch)):
            if ch % 16:
                raise InputError(f"{name} channels ({ch}) must be a multiple of 16 (GroupNorm(16))")
        self.num_classes = num_classes
        # registration order = release state-dict order: own buffer first, then children
        self.register_buffer("organ_embedding", torch.zeros(num_classes, EMBEDDING_DIM))
        self.backbone = backbone
        self.precls_conv = nn.Sequential(nn.GroupNorm(16, dec_ch), nn.ReLU(inplace=True),
                                         nn.Conv3d(dec_ch, HEAD_CHANNELS, kernel_size=1))
        self.GAP = nn.Sequential(nn.GroupNorm(16, bot_ch), nn.ReLU(inplace=True),
                                 nn.AdaptiveAvgPool3d((1, 1, 1)), nn.Conv3d(bot_ch, 256, kernel_size=1))
        n_params = sum(DYNAMIC_WEIGHT_NUMS) + sum(DYNAMIC_BIAS_NUMS)
        self.controller = nn.Conv3d(2 * 256, n_params, kernel_size=1)
        self.text_to_vision = nn.Linear(EMBEDDING_DIM, 256)

    def dynamic_parameters(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """(B, K, 153) head parameters generated for every sample and class."""
        task = F.relu(self.text_to_vision(self.organ_embedding))  # (K, 256)
        image = self.GAP(bottleneck).flatten(1)  # (B, 256)
        b, k = image.shape[0], task.shape[0]
        cond = torch.cat([image[:, None, :].expand(b, k, -1), task[None].expand(b, k, -1)], -1)
        w = self.controller.weight.flatten(1)  # (153, 512)
        return F.linear(cond, w, self.controller.bias)

    @staticmethod
    def split_parameters(params: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Split (K, 153) into per-layer weights [(K*8, 8), (K*8, 8), (K, 8)] and biases."""
        k = params.shape[0]
        parts = torch.split(params, list(DYNAMIC_WEIGHT_NUMS + DYNAMIC_BIAS_NUMS), dim=1)
        n = len(DYNAMIC_WEIGHT_NUMS)
        weights = [p.reshape(k * (HEAD_CHANNELS if i < n - 1 else 1), -1) for i, p in enumerate(parts[:n])]
        biases = [p.reshape(-1) for p in parts[n:]]
        return weights, biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottleneck, decoded = self.backbone.features(x)
        params = self.dynamic_parameters(bottleneck)
        feats = self.precls_conv(decoded)  # (B, 8, D, H, W)
        k = self.num_classes
        out = []
        for i in range(x.shape[0]):
            weights, biases = self.split_parameters(params[i])
            y = feats[i:i + 1].repeat(1, k, 1, 1, 1)  # (1, K*8, D, H, W), class-major groups
            for layer, (w, b) in enumerate(zip(weights, biases)):
                y = F.conv3d(y, w[:, :, None, None, None], b, groups=k)
                if layer < len(weights) - 1:
                    y = F.relu(y)
            out.append(y)
        return torch.cat(out, 0)
