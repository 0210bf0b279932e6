"""The encoder of a pre-trained segmentation network, as a feature extractor.

`ENCODER_FEATURES` says, per registered backbone, how to run only the encoder of the network the
backbone's adapter builds and which feature map to take: the deepest one (the bottleneck), whose
channels the classification head pools. `DEEPEST_BLOCK` names the block that computes it where
that block ends in a normalisation (instance norm; SuPreM's U-Net batch norm with batch statistics,
which at batch size 1 is the same): `encoder_features(..., pre_norm=True)` then returns the input
of the last normalisation layer that block runs, so that pooling keeps each channel's level over
the patch (a per-instance normalisation sets every channel's mean over the patch to its bias).
SegResNet's blocks are pre-activation (the output is not normalised): its map is taken as it is. The tensors it uses are those the registry lists as the
backbone's `encoder_keys`; `load_encoder_weights` copies exactly those from a checkpoint and says
in one line when they do not fit.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping

import torch
from torch import nn

from ..inference.openvino_export import TwoLevelNorm
from ..networks.registry import get_backbone
from ..errors import InputError


def _plain_unet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:  # nnU-Net PlainConvUNet / ResidualEncoderUNet
    return net.encoder(x)[-1]


def _suprem_unet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.check_patch_size(x.shape[2:])
    s = net.down_tr64(x)
    s = net.down_tr128(net.pool(s))
    s = net.down_tr256(net.pool(s))
    return net.down_tr512(net.pool(s))


def _segresnet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.encode(x)[0]


def _swinunetr(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.check_patch_size(x.shape[2:])
    return net.encoder10(net.swinViT(x, net.normalize)[4])


#: backbone name -> f(network, input) giving the deepest encoder feature map (B, C, ...)
ENCODER_FEATURES: Dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "nnunet": _plain_unet, "resenc": _plain_unet, "unet": _suprem_unet, "segresnet": _segresnet,
    "swinunetr": _swinunetr,
}


#: backbone name -> the module whose output is the deepest feature map, where it ends in a normalisation
DEEPEST_BLOCK: Dict[str, Callable[[nn.Module], nn.Module]] = {
    "nnunet": lambda net: net.encoder.stages[-1], "resenc": lambda net: net.encoder.stages[-1],
    "unet": lambda net: net.down_tr512, "swinunetr": lambda net: net.encoder10,
}
#: the normalisation layers whose input `pre_norm` takes; TwoLevelNorm is what the OpenVINO export puts in their
#: place (inference/openvino_export.py), so an exported classifier takes the same features
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, TwoLevelNorm)


def encoder_features(backbone: str, net: nn.Module, x: torch.Tensor, pre_norm: bool = False) -> torch.Tensor:
    """The deepest encoder feature map of `net` (a `backbone` network) for input `x`; with
    `pre_norm`, the input of the last normalisation layer its deepest block runs (see the module
    docstring; backbones without such a block give the map itself)."""
    get_backbone(backbone)  # unknown name: one line listing the choices
    if backbone not in ENCODER_FEATURES:
        raise InputError(f"backbone {backbone!r} has no encoder feature extractor for classification")
    if not pre_norm or backbone not in DEEPEST_BLOCK:
        return ENCODER_FEATURES[backbone](net, x)
    seen: List[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
             for m in DEEPEST_BLOCK[backbone](net).modules() if isinstance(m, _NORMS)]
    try:
        out = ENCODER_FEATURES[backbone](net, x)
    finally:
        for h in hooks:
            h.remove()
    return seen[-1] if seen else out


def encoder_state(backbone: str, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The tensors of `state_dict` under the backbone's encoder keys."""
    keys = get_backbone(backbone).encoder_keys
    return {k: v for k, v in state_dict.items() if k.startswith(keys)}


def load_encoder_weights(net: nn.Module, backbone: str, state_dict: Mapping[str, torch.Tensor], source: str) -> int:
    """Copy the encoder tensors of `state_dict` into `net`; returns how many. ValueError (one line,
    naming `source`) when the checkpoint lacks an encoder tensor of `net` or one has another shape."""
    own = encoder_state(backbone, net.state_dict())
    given = encoder_state(backbone, state_dict)
    missing = sorted(k for k in own if k not in given)
    wrong = sorted(k for k in own if k in given and tuple(given[k].shape) != tuple(own[k].shape))
    if not own:
        raise InputError(f"{source}: the {backbone} network has no tensor under its encoder keys")
    if missing or wrong:
        first = missing[0] if missing else wrong[0]
        detail = ("missing" if missing else
                  f"shape {tuple(given[first].shape)} where the network has {tuple(own[first].shape)}")
        raise InputError(f"{source}: its encoder does not fit the {backbone} network the classifier builds "
                         f"({len(missing)} encoder tensor(s) missing, {len(wrong)} of another shape; "
                         f"first: {first} {detail})")
    sd = net.state_dict()
    sd.update({k: given[k].to(sd[k].dtype) for k in own})
    net.load_state_dict(sd)
    return len(own)
