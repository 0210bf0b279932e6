"""Converters from released checkpoint layouts to our adapters' key names, and a checked loader.

Layouts (``detect_layout``):

* ``universal``      -- SuPreM U-Net / Swin releases and the CLIP-driven Universal Model:
  ``module.organ_embedding``, ``module.backbone.<adapter keys>``,
  ``module.{precls_conv,GAP,controller,text_to_vision}``
* ``segresnet``      -- SuPreM SegResNet: ``module.<MONAI SegResNet keys>``, head ``conv_final.2.conv``
* ``models_genesis`` -- Models Genesis UNet3D: ``module.down_tr64...``, ``module.out_tr.final_conv``
* ``swin_ssl``       -- Tang et al. self-supervised Swin: ``module.patch_embed``, ``module.layersN``,
  ``mlp.fc1/fc2``
* ``ours``           -- our adapters' own names (exported models, nnU-Net ``network_weights``)

Loading matches by name with shape checks and reports loaded / missing / unexpected / mismatched
keys; a load that loads nothing raises.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..networks.checkpoint import CheckpointError, StateDict

from ..errors import InputError
log = logging.getLogger(__name__)

UNIVERSAL_HEAD_PREFIXES = ("organ_embedding", "precls_conv.", "GAP.", "controller.", "text_to_vision.")


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """Keys starting with `prefix`, with it removed; other keys are dropped."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def strip_module(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Remove a DataParallel ``module.`` prefix from every key that has one."""
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def detect_layout(sd: Mapping[str, torch.Tensor]) -> str:
    """Name of the layout of state dict `sd` (see module docstring); ValueError if unknown."""
    keys = list(strip_module(sd))
    if any(k.startswith("backbone.") for k in keys) and "organ_embedding" in keys:
        return "universal"
    if any(k.startswith("convInit.") for k in keys) and any(k.startswith("down_layers.") for k in keys):
        return "segresnet"
    if any(k.startswith("down_tr64.") for k in keys):
        return "models_genesis" if any(k.startswith("module.") for k in sd) else "ours"
    if any(k.startswith("patch_embed.") for k in keys) and any(k.startswith("layers1.") for k in keys):
        return "swin_ssl"
    if any(k.startswith("swinViT.") for k in keys):
        return "ours"
    raise InputError(f"unknown checkpoint layout (first keys: {keys[:3]})")


def universal_backbone_name(sd: Mapping[str, torch.Tensor]) -> str:
    """'unet' or 'swinunetr' for a universal-layout state dict."""
    keys = strip_module(sd)
    if any(k.startswith("backbone.down_tr64.") for k in keys):
        return "unet"
    if any(k.startswith("backbone.swinViT.") for k in keys):
        return "swinunetr"
    raise InputError("universal checkpoint with an unknown backbone (neither U-Net nor Swin keys)")


def _swin_ssl_key(k: str) -> Optional[str]:
    if not (k.startswith("patch_embed.") or re.match(r"layers[1-4]\.", k)):
        return None
    return "swinViT." + k.replace(".mlp.fc1.", ".mlp.linear1.").replace(".mlp.fc2.", ".mlp.linear2.")


def to_adapter_keys(sd: Mapping[str, torch.Tensor], layout: str) -> Tuple[StateDict, StateDict]:
    """(tensors renamed to our adapter's keys, tensors of a Universal-Model head in its own names)."""
    sd = strip_module(sd)
    if layout == "universal":
        head = {k: v for k, v in sd.items() if k.startswith(UNIVERSAL_HEAD_PREFIXES)}
        return strip_prefix(sd, "backbone."), head
    if layout in ("segresnet", "models_genesis", "ours"):
        return dict(sd), {}
    if layout == "swin_ssl":
        out = {}
        for k, v in sd.items():
            nk = _swin_ssl_key(k)
            if nk is not None:
                out[nk] = v
        return out, {}
    raise InputError(f"no converter for layout {layout!r}")


@dataclass
class LoadReport:
    """Outcome of a by-name load."""

    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: List[str] = field(default_factory=list)  # in the checkpoint, not in the model
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # excluded on purpose (e.g. a head)

    def fraction_loaded(self, prefixes: Optional[Sequence[str]] = None) -> float:
        """Loaded share of the model keys (optionally only those under `prefixes`)."""
        def sel(keys: Iterable[str]) -> List[str]:
            return [k for k in keys if prefixes is None or k.startswith(tuple(prefixes))]
        total = sel(self.loaded + self.missing + [m[0] for m in self.mismatched] + self.skipped)
        return len(sel(self.loaded)) / len(total) if total else 0.0

    def table(self, max_rows: int = 20) -> str:
        """Plain-text table: counts per status, then up to `max_rows` names per non-loaded status."""
        rows = [f"{'status':<11}{'tensors':>8}", f"{'loaded':<11}{len(self.loaded):>8}",
                f"{'missing':<11}{len(self.missing):>8}", f"{'unexpected':<11}{len(self.unexpected):>8}",
                f"{'mismatched':<11}{len(self.mismatched):>8}", f"{'skipped':<11}{len(self.skipped):>8}"]
        for name, items in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("skipped", self.skipped)):
            for k in items[:max_rows]:
                rows.append(f"  {name}: {k}")
            if len(items) > max_rows:
                rows.append(f"  {name}: ... {len(items) - max_rows} more")
        for k, a, b in self.mismatched[:max_rows]:
            rows.append(f"  mismatched: {k} checkpoint {list(a)} vs model {list(b)}")
        return "\n".join(rows)


def match_state_dict(model_sd: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor],
                     skip_prefixes: Sequence[str] = ()) -> Tuple[StateDict, LoadReport]:
    """Tensors of `source` that fit `model_sd` by name and shape, and the report."""
    rep, out = LoadReport(), {}
    for k, target in model_sd.items():
        if skip_prefixes and k.startswith(tuple(skip_prefixes)):
            rep.skipped.append(k)
        elif k not in source:
            rep.missing.append(k)
        elif tuple(source[k].shape) != tuple(target.shape):
            rep.mismatched.append((k, tuple(source[k].shape), tuple(target.shape)))
        else:
            out[k] = source[k]
            rep.loaded.append(k)
    rep.unexpected = [k for k in source if k not in model_sd]
    return out, rep


def load_matching(model: nn.Module, source: Mapping[str, torch.Tensor], source_name: str = "<checkpoint>",
                  skip_prefixes: Sequence[str] = (), require_prefixes: Sequence[str] = ()) -> LoadReport:
    """Copy every tensor of `source` that matches `model` by name and shape; return the report.

    Raises CheckpointError if nothing loads, or if any key under `require_prefixes` is not loaded.
    """
    sd = model.state_dict()
    matched, rep = match_state_dict(sd, source, skip_prefixes)
    if not matched:
        raise CheckpointError(f"{source_name}: no tensor matches {type(model).__name__} by name and shape "
                              f"({len(rep.missing)} missing, {len(rep.unexpected)} unexpected, "
                              f"{len(rep.mismatched)} mismatched)")
    if require_prefixes:
        bad = [k for k in rep.missing + [m[0] for m in rep.mismatched] if k.startswith(tuple(require_prefixes))]
        if bad:
            raise CheckpointError(f"{source_name}: {len(bad)} required tensors did not load into "
                                  f"{type(model).__name__}, first {bad[0]!r}")
    with torch.no_grad():
        for k, v in matched.items():
            sd[k].copy_(v.to(dtype=sd[k].dtype))
    log.info("%s -> %s\n%s", source_name, type(model).__name__, rep.table())
    return rep
