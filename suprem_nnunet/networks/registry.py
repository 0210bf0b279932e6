"""Backbones by name: what the planner, trainer, head remapping and zoo need to know of each.

Adapter contract (every network class named here):
  * constructed as ``cls(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)``, the way
    nnunetv2 builds ``plans['configurations'][c]['architecture']`` (located with pydoc);
  * ``head_keys``: state-dict key prefixes of the class head; their tensors' dim 0 indexes the
    output classes (channel 0 = background), so a head can be remapped class by class;
  * ``encoder_keys``: key prefixes of the encoder (what freezing schedules freeze);
  * ``divisible_by``: every patch side must be a multiple of it;
  * fixed-topology adapters (unet, segresnet, swinunetr) also offer the classmethods
    ``activation_bytes_per_voxel(**arch_kwargs)`` and
    ``training_memory_bytes(patch_size, batch_size, **arch_kwargs)`` (see ``networks/memory.py``);
    their forward returns plain logits (deep supervision off).
Pure data: importing this module imports no network code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple
from ..errors import InputError


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
    test_arch_kwargs: Dict = field(default_factory=dict)  # tiny widths for CPU tests
    fixed_topology: bool = False  # True: depth/widths fixed by the paper, not by the fingerprint
    released_checkpoint: Optional[str] = None  # zoo name of the SuPreM release for this backbone
    preset: Optional[str] = None  # file name in plans/ of the SuPreM-recipe preset
    min_patch_side: Optional[int] = None  # smallest usable patch side, if above divisible_by


BACKBONES: Dict[str, Backbone] = {
    b.name: b for b in (
        Backbone("nnunet", "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                 "nnU-Net's own PlainConvUNet, topology from the dataset fingerprint",
                 head_keys=("decoder.seg_layers.",), encoder_keys=("encoder.",), deep_supervision=True),
        Backbone("resenc", "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                 "nnU-Net's residual-encoder U-Net, topology from the dataset fingerprint",
                 head_keys=("decoder.seg_layers.",), encoder_keys=("encoder.",), deep_supervision=True),
        Backbone("unet", "suprem_nnunet.networks.unet3d.SuPreMUNet3D",
                 "SuPreM / Models Genesis 3D U-Net (4 levels, 32-512 channels, batch norm)",
                 head_keys=("out_tr.final_conv.",),
                 encoder_keys=("down_tr64.", "down_tr128.", "down_tr256.", "down_tr512."),
                 divisible_by=8, paper_params="19.08M",
                 default_arch_kwargs={"base_features": 32, "batch_stats_always": True},
                 test_arch_kwargs={"base_features": 4, "batch_stats_always": True},
                 fixed_topology=True, released_checkpoint="supervised_suprem_unet_2100",
                 preset="suprem_unet.json"),
        Backbone("segresnet", "suprem_nnunet.networks.segresnet.SuPreMSegResNet",
                 "MONAI SegResNet(blocks_down=[1,2,2,4], blocks_up=[1,1,1], init_filters=16)",
                 head_keys=("conv_final.2.conv.",), encoder_keys=("convInit.", "down_layers."),
                 divisible_by=8, paper_params="4.70M",
                 default_arch_kwargs={"init_filters": 16, "blocks_down": [1, 2, 2, 4],
                                      "blocks_up": [1, 1, 1]},
                 test_arch_kwargs={"init_filters": 8, "blocks_down": [1, 2, 2, 4],
                                   "blocks_up": [1, 1, 1]},
                 fixed_topology=True, released_checkpoint="supervised_suprem_segresnet_2100",
                 preset="suprem_segresnet.json"),
        Backbone("swinunetr", "suprem_nnunet.networks.swinunetr.SuPreMSwinUNETR",
                 "MONAI SwinUNETR(feature_size=48), release-era (MONAI 0.9) patch merging",
                 head_keys=("out.conv.conv.",),
                 encoder_keys=("swinViT.", "encoder1.", "encoder2.", "encoder3.", "encoder4.",
                               "encoder10."),
                 divisible_by=32, min_patch_side=64, paper_params="62.19M",
                 default_arch_kwargs={"feature_size": 48, "patch_merging": "v0.9"},
                 test_arch_kwargs={"feature_size": 12, "patch_merging": "v0.9", "depths": [1, 1, 1, 1],
                                   "window_size": 4},
                 fixed_topology=True, released_checkpoint="supervised_suprem_swinunetr_2100",
                 preset="suprem_swinunetr.json"),
    )
}


def backbone_for_class(network_class_name: str) -> Optional[Backbone]:
    """The registered backbone whose network class is `network_class_name` (dotted), or None."""
    for b in BACKBONES.values():
        if b.network_class_name == network_class_name:
            return b
    return None


def get_backbone(name: str) -> Backbone:
    """The registered backbone called `name`; ValueError listing the choices otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise InputError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None
