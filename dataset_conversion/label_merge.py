"""Combine the label maps of two copies of one scan (arrays in LPS voxel order, unified ids).

The duplicate's labels are lined up with the kept case by the flip found from the images and a
nearest-voxel resize over the whole voxel extent (the fingerprint's geometry, so a corrected header
spacing does not matter). Classes both copies annotate must agree (Dice >= `AGREE_DICE`, an organ
counted with its tumours); then the classes only the duplicate annotates are painted where the
kept case is background, a tumour also over its host organ. Otherwise nothing is taken over.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .labelspace import tumor_host_classes

AGREE_DICE = 0.9


@dataclass
class LabelMergeResult:
    label: np.ndarray
    agree: bool
    dice: Dict[str, float] = field(default_factory=dict)  # shared annotated classes
    added: List[str] = field(default_factory=list)  # classes taken over from the duplicate


def align(arr: np.ndarray, flip: Tuple[bool, bool, bool], shape: Sequence[int]) -> np.ndarray:
    """`arr` flipped along its (z, y, x) axes by `flip`, then nearest-voxel resized to `shape`
    over the same voxel extent."""
    arr = arr[tuple(slice(None, None, -1) if f else slice(None) for f in flip)]
    idx = [np.minimum(((np.arange(m) + 0.5) * n / m).astype(int), n - 1) for n, m in zip(arr.shape, shape)]
    return arr[np.ix_(*idx)]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def combine(kept: np.ndarray, dup: np.ndarray, classes: Sequence[str], kept_annotated: Sequence[str],
            dup_annotated: Sequence[str]) -> LabelMergeResult:
    """Merge `dup` (already aligned, same ids as `kept`) into `kept` if their shared classes agree."""
    ids = {c: i + 1 for i, c in enumerate(classes)}
    hosts = tumor_host_classes(classes)  # tumour -> its host's classes in this list
    with_tumors = {c: [c] + [t for t, hs in hosts.items() if c in hs] for c in classes}
    shared = sorted(set(kept_annotated) & set(dup_annotated))
    dice = {}
    for c in shared:
        vals = [ids[n] for n in with_tumors[c] if n in kept_annotated and n in dup_annotated]
        dice[c] = round(_dice(np.isin(kept, vals), np.isin(dup, vals)), 4)
    if any(d < AGREE_DICE for d in dice.values()):
        return LabelMergeResult(kept, False, dice)
    out = kept.copy()
    added = sorted(set(dup_annotated) - set(kept_annotated))
    for c in sorted(added, key=lambda n: n in hosts):  # organs first, tumours over them
        where = dup == ids[c]
        allowed = out == 0
        for h in hosts.get(c, []):
            allowed |= out == ids[h]
        out[where & allowed] = ids[c]
    return LabelMergeResult(out, True, dice, added)
