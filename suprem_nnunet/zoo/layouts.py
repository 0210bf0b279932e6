"""Synthetic checkpoints from layout files (key / shape / dtype lists of the releases).

A layout file (see ``tests/data/checkpoint_layouts/README.md``) lists ``net_keys`` in state-dict
order. `synthetic_checkpoint` builds ``{'net': state_dict}`` with random float tensors and zero
integer buffers, for testing converters without the released binaries.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Union

import torch
from ..networks import network_class
from ..networks.universal import UniversalModel
from ..errors import InputError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "float64": torch.float64}


def read_layout(path: Union[str, Path]) -> Dict:
    p = Path(path)
    try:
        layout = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: cannot read layout file ({e})") from None
    if "net_keys" not in layout:
        raise InputError(f"{p}: not a checkpoint layout file (no net_keys)")
    return layout


def synthetic_state_dict(path: Union[str, Path], seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """State dict with the layout's keys, shapes, dtypes and order (random floats, zero integers)."""
    g = torch.Generator().manual_seed(seed)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for item in read_layout(path)["net_keys"]:
        dtype = _DTYPES.get(item["dtype"])
        if dtype is None:
            raise InputError(f"{path}: unsupported dtype {item['dtype']!r} for {item['name']}")
        shape = tuple(item["shape"])
        out[item["name"]] = (torch.randn(shape, generator=g, dtype=dtype) * 0.05 if dtype.is_floating_point
                             else torch.zeros(shape, dtype=dtype))
    return out


def synthetic_checkpoint(path: Union[str, Path], seed: int = 0) -> Dict:
    """``{'net': synthetic_state_dict(...)}``, the confirmed top level of the releases."""
    return {"net": synthetic_state_dict(path, seed)}


def release_like_checkpoint(backbone: str = "unet", num_classes: int = 32, seed: int = 0,
                            **arch_kwargs) -> Dict:
    """A small checkpoint in a release layout, with random weights, for end-to-end tests.

    ``unet`` / ``swinunetr``: a Universal-Model file (``{'net': {'module.organ_embedding', 'module.backbone.*',
    ...}}``); ``segresnet``: ``{'net': {'module.<SegResNet keys>'}}`` with `num_classes` outputs.
    Widths default to tiny ones (U-Net 8, SegResNet 8; Swin needs feature_size 48 for the head's
    GroupNorm(16)).
    """

    torch.manual_seed(seed)
    defaults = {"unet": {"base_features": 8}, "segresnet": {"init_filters": 8},
                "swinunetr": {"feature_size": 48}}
    if backbone not in defaults:
        raise InputError(f"no release layout for backbone {backbone!r}")
    kw = {**defaults[backbone], **arch_kwargs}
    if backbone == "segresnet":
        net = network_class(backbone)(input_channels=1, num_classes=num_classes, **kw)
    else:
        net = UniversalModel(network_class(backbone)(input_channels=1, num_classes=1, **kw), num_classes)
        with torch.no_grad():
            net.organ_embedding.normal_()
    return {"net": OrderedDict(("module." + k, v.clone()) for k, v in net.state_dict().items())}
