"""Backbones by name: what the planner, trainer, head remapping and zoo need to know of each.

Adapter contract (every network class named here):
  * constructed as ``cls(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)``, the way
    nnunetv2 builds ``plans['configurations'][c]['architecture']`` (located with pydoc);
  * ``head_keys``: state-dict key prefixes of the class head; their tensors' dim 0 indexes the
    output classes (channel 0 = background), so a head can be remapped class by class;
  * ``encoder_keys``: key prefixes of the encoder (what freezing schedules freeze);
  * ``divisible_by``: every patch side must be a multiple of it.
Pure data: importing this module imports no network code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class Backbone:
    name: str
    network_class_name: str  # dotted path, as stored in plans
    description: str
    head_keys: Tuple[str, ...]
    encoder_keys: Tuple[str, ...]
    divisible_by: Optional[int] = None  # None: the planner derives it (nnU-Net topology)
    deep_supervision: bool = False
    paper_params: Optional[str] = None  # parameter count the SuPreM paper reports
    default_arch_kwargs: Dict = field(default_factory=dict)


BACKBONES: Dict[str, Backbone] = {
    b.name: b for b in (
        Backbone("nnunet", "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                 "nnU-Net's own PlainConvUNet, topology from the dataset fingerprint",
                 head_keys=("decoder.seg_layers.",), encoder_keys=("encoder.",), deep_supervision=True),
        Backbone("resenc", "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                 "nnU-Net's residual-encoder U-Net, topology from the dataset fingerprint",
                 head_keys=("decoder.seg_layers.",), encoder_keys=("encoder.",), deep_supervision=True),
    )
}


def get_backbone(name: str) -> Backbone:
    """The registered backbone called `name`; ValueError listing the choices otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None
