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

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "float64": torch.float64}


def read_layout(path: Union[str, Path]) -> Dict:
    p = Path(path)
    try:
        layout = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: cannot read layout file ({e})") from None
    if "net_keys" not in layout:
        raise ValueError(f"{p}: not a checkpoint layout file (no net_keys)")
    return layout


def synthetic_state_dict(path: Union[str, Path], seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """State dict with the layout's keys, shapes, dtypes and order (random floats, zero integers)."""
    g = torch.Generator().manual_seed(seed)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for item in read_layout(path)["net_keys"]:
        dtype = _DTYPES.get(item["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: unsupported dtype {item['dtype']!r} for {item['name']}")
        shape = tuple(item["shape"])
        out[item["name"]] = (torch.randn(shape, generator=g, dtype=dtype) * 0.05 if dtype.is_floating_point
                             else torch.zeros(shape, dtype=dtype))
    return out


def synthetic_checkpoint(path: Union[str, Path], seed: int = 0) -> Dict:
    """``{'net': synthetic_state_dict(...)}``, the confirmed top level of the releases."""
    return {"net": synthetic_state_dict(path, seed)}
