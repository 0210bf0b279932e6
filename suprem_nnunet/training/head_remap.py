"""Carry pre-trained weights over to a target task whose classes differ.

The body of the network is copied as is (shapes must match). The class head is remapped by class
name: a target class the pre-trained model knows (by its unified name or a synonym) starts from
that trained output channel, weights and bias; background keeps background; novel classes keep
their fresh initialisation.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..labels import canonical
from ..errors import InputError


@dataclass(frozen=True)
class ChannelMap:
    target_channel: int
    target_name: str
    source_channel: Optional[int]
    source_name: Optional[str]
    status: str  # background | shared | novel


def map_head(source_classes: Sequence[str], target_classes: Sequence[str]) -> List[ChannelMap]:
    """Channel mapping between two class lists (foreground names in channel order 1..N)."""
    src = {canonical(n): i + 1 for i, n in enumerate(source_classes)}
    rows = [ChannelMap(0, "background", 0, "background", "background")]
    for i, name in enumerate(target_classes):
        c = canonical(name)
        if c in src:
            rows.append(ChannelMap(i + 1, name, src[c], source_classes[src[c] - 1], "shared"))
        else:
            rows.append(ChannelMap(i + 1, name, None, None, "novel"))
    return rows


def format_mapping(rows: Sequence[ChannelMap]) -> str:
    """The mapping as a fixed-width text table."""
    lines = [f"{'target ch':>9}  {'target class':<30} {'from ch':>7}  {'pre-trained class':<30} status"]
    for r in rows:
        src = "-" if r.source_channel is None else str(r.source_channel)
        lines.append(f"{r.target_channel:>9}  {r.target_name:<30} {src:>7}  {r.source_name or '-':<30} {r.status}")
    return "\n".join(lines)


def save_mapping(rows: Sequence[ChannelMap], path: Path) -> None:
    Path(path).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")


def _is_head(key: str, head_keys: Sequence[str]) -> bool:
    return any(key.startswith(h) for h in head_keys)


def transfer_weights(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                     head_keys: Sequence[str], rows: Optional[Sequence[ChannelMap]],
                     num_source_channels: int = 0) -> Tuple[Dict[str, torch.Tensor], Dict[str, int]]:
    """New state dict for the target network: body from `source`, head remapped by `rows`.

    `target` is the freshly initialised target state dict (novel channels keep its values).
    `rows=None`: the source has no usable class head; the whole head stays fresh.
    Raises ValueError naming the first key whose shape or presence does not fit.
    """
    out: Dict[str, torch.Tensor] = {}
    stats = {"body_copied": 0, "head_tensors": 0, "head_channels_copied": 0, "head_channels_fresh": 0}
    src = {k[7:] if k.startswith("module.") and k not in target else k: v for k, v in source.items()}
    for key, fresh in target.items():
        if _is_head(key, head_keys):
            stats["head_tensors"] += 1
            if rows is None:
                out[key] = fresh
                stats["head_channels_fresh"] = int(fresh.shape[0])
                continue
            if key not in src:
                raise InputError(f"pre-trained weights have no head tensor {key!r}")
            s = src[key]
            if s.shape[0] != num_source_channels or s.shape[1:] != fresh.shape[1:]:
                raise InputError(f"head tensor {key!r}: pre-trained shape {tuple(s.shape)} does not fit "
                                 f"target {tuple(fresh.shape)} with {num_source_channels} source channels")
            new = fresh.clone()
            for r in rows:
                if r.source_channel is not None:
                    new[r.target_channel] = s[r.source_channel].to(new.dtype)
            out[key] = new
            continue
        if key not in src:
            raise InputError(f"pre-trained weights lack {key!r}: the network architectures differ")
        if tuple(src[key].shape) != tuple(fresh.shape):
            raise InputError(f"{key!r}: pre-trained shape {tuple(src[key].shape)} != target {tuple(fresh.shape)}: "
                             "the network architectures differ")
        out[key] = src[key].to(fresh.dtype)
        stats["body_copied"] += 1
    if stats["head_tensors"] == 0:
        raise InputError(f"no head tensor matches the head keys {list(head_keys)}")
    if rows is not None:
        stats["head_channels_copied"] = sum(r.source_channel is not None for r in rows)
        stats["head_channels_fresh"] = sum(r.source_channel is None for r in rows)
    return out, stats
