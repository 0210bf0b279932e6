"""The argmax of linearly resampled logits, computed only where the neighbours disagree.

nnU-Net exports a label map by resampling every class's logits to the input grid (linear,
`order=1`; nearest along a separately resampled axis) and taking the argmax. An output voxel's
value of class j is a weighted mean of class j's logits at the 2 x 2 x 2 network-grid voxels around
it, with non-negative weights that sum to 1. If all of those voxels have the same argmax k, then k is
the argmax of the mean as well: x_k >= x_j at every corner gives mean_k >= mean_j, and for j < k
(which the first-index tie-break would prefer) the inequality is strict at every corner, so strict
in the mean. The label of such a voxel is the label of any of its corners; no class needs to be
resampled there.

`labels_from_logits` therefore takes the argmax on the network grid once, marks the network-grid
voxels whose 2 x 2 x 2 block (the voxel and its +1 neighbours) holds one label, gathers labels and
marks to the output grid with the first interpolation tap of each axis, and computes the full
weighted mean of all classes only for the output voxels whose block is mixed (organ borders, a few
per cent of a CT). Compared with resampling every class at every output voxel, this is the same label
map up to float32 rounding at near-ties (the separable computation sums in another order); it is
used only when every axis operator has non-negative weights on at most two neighbouring input
voxels (linear or nearest), else None is returned and the caller resamples as before.
"""
from __future__ import annotations

from itertools import product
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .axis_operators import taps

#: output voxels whose mixed-block logits are gathered at once (classes x this x 4 bytes per corner)
BATCH_VOXELS = 1 << 18
#: above this share of mixed output voxels the dense computation is faster (measured: a gathered voxel
#: costs about 3 times a densely resampled one)
MAX_MIXED_FRACTION = 0.25
#: output rows of axis 0 per slab
SLAB_ROWS = 16


def _axis_taps(m: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(columns (n_out, 2), weights (n_out, 2)) of an axis operator whose rows have one or two
    non-negative weights on neighbouring columns, lower column first (`axis_operators.taps`); a row with
    one weight repeats its column with weight 0. None for any other operator (cubic splines, negative
    weights, wider supports)."""
    found = taps(m) if m.ndim == 2 else None
    if found is None or found[0].shape[1] > 2 or bool((m < 0).any()) or bool((found[1][:, 0] == 0).any()):
        return None  # wider, signed, or a row with no weight at all
    cols, w = found  # non-zero columns first, in ascending order; padding columns have weight 0
    if cols.shape[1] == 1:
        return cols.repeat(1, 2), torch.cat([w, torch.zeros_like(w)], 1)
    cols = torch.where(w != 0, cols, cols[:, :1])
    if bool((cols[:, 1] - cols[:, 0] > 1).any()):
        return None  # two weights that are not on neighbouring columns
    return cols, w


def _uniform_blocks(labels: torch.Tensor) -> torch.Tensor:
    """bool, same shape: the voxel and its +1 neighbours along every combination of axes (the last
    voxel of an axis repeats itself) hold one label."""
    idx = [torch.clamp(torch.arange(n) + 1, max=n - 1) for n in labels.shape]
    out = torch.ones(labels.shape, dtype=torch.bool)
    for shift in product((0, 1), repeat=labels.ndim):
        if not any(shift):
            continue
        other = labels
        for axis, s in enumerate(shift):
            if s:
                other = other.index_select(axis, idx[axis])
        out &= labels == other
    return out


def _gather_grid(a: torch.Tensor, cols: Sequence[torch.Tensor]) -> torch.Tensor:
    for axis, c in enumerate(cols):
        a = a.index_select(axis, c)
    return a


def labels_from_logits(logits: torch.Tensor, mats: Sequence[torch.Tensor],
                       out: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """argmax over classes of `logits` (c, x, y, z) resampled with the axis operators `mats`
    ((n_out, n_in) each), written into `out` (uint8/uint16 of the output shape; made when None) and
    returned; None (nothing written) when an operator is not linear or nearest (see module doc), or
    when more than MAX_MIXED_FRACTION of the output voxels are mixed (a noisy, untrained network),
    where the caller's dense computation is faster. Works in slabs of SLAB_ROWS output rows of axis 0,
    so that beyond `out` it holds only the network-grid labels and per-slab arrays."""
    taps = [_axis_taps(m) for m in mats]
    if any(t is None for t in taps) or logits.ndim != 4:
        return None
    x = logits if logits.dtype == torch.float32 else logits.float()
    dtype = torch.uint8 if x.shape[0] <= 256 else torch.int32
    grid_labels = torch.empty(x.shape[1:], dtype=dtype)
    for i in range(0, x.shape[1], SLAB_ROWS):  # argmax a slab at a time: no int64 copy of the grid
        grid_labels[i:i + SLAB_ROWS] = x[:, i:i + SLAB_ROWS].argmax(0)
    uniform = _uniform_blocks(grid_labels)
    first = [c[:, 0] for c, _ in taps]
    if float((~_gather_grid(uniform, [f[::4] for f in first])).float().mean()) > MAX_MIXED_FRACTION:
        return None  # mostly borders (noise), estimated on every 4th output voxel: dense is faster
    shape = tuple(len(f) for f in first)
    if out is None:
        out = np.empty(shape, np.uint8 if x.shape[0] <= 256 else np.uint16)
    target = torch.from_numpy(out) if out.dtype == np.uint8 else None
    for r0 in range(0, shape[0], SLAB_ROWS):
        cols = [first[0][r0:r0 + SLAB_ROWS], first[1], first[2]]
        slab = _gather_grid(grid_labels, cols)
        mixed = torch.nonzero(~_gather_grid(uniform, cols))
        _fill_mixed(x, taps, mixed, slab, r0)
        if target is not None:
            target[r0:r0 + slab.shape[0]] = slab
        else:
            out[r0:r0 + slab.shape[0]] = slab.numpy().astype(out.dtype)
    return out


def _fill_mixed(x: torch.Tensor, taps: List[Tuple[torch.Tensor, torch.Tensor]], where: torch.Tensor,
                out: torch.Tensor, row0: int = 0) -> None:
    """out[where] = argmax of the weighted mean of the classes at each voxel's 2 x 2 x 2 corners; `where`
    indexes `out`, whose row 0 is output row `row0` of axis 0."""
    for b in range(0, len(where), BATCH_VOXELS):
        p = where[b:b + BATCH_VOXELS]
        q = (p[:, 0] + row0, p[:, 1], p[:, 2])
        acc = None
        for corner in product((0, 1), repeat=3):
            cols = [taps[a][0][q[a], corner[a]] for a in range(3)]
            w = taps[0][1][q[0], corner[0]] * taps[1][1][q[1], corner[1]] * taps[2][1][q[2], corner[2]]
            term = x[:, cols[0], cols[1], cols[2]] * w
            acc = term if acc is None else acc.add_(term)
        out[p[:, 0], p[:, 1], p[:, 2]] = acc.argmax(0).to(out.dtype)
