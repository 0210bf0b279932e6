"""Resampling as linear operators: one (n_out, n_in) matrix per axis, reproducing nnU-Net's
`resample_data_or_seg` (skimage `resize` in-plane / 3D, `map_coordinates` for the separate z step),
applied as weighted gathers where a row has few non-zeros (linear and nearest interpolation)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis
from scipy.ndimage import map_coordinates
from skimage.transform import resize

Shape = Union[Tuple[int, ...], List[int], np.ndarray]
Spacing = Union[Tuple[float, ...], List[float], np.ndarray]

_MATRIX_CACHE: dict = {}


def axis_matrix(n_in: int, n_out: int, order: int, nearest_map: bool = False) -> torch.Tensor:
    """(n_out, n_in) float32 matrix M with resample(x) = M @ x along one axis.

    `nearest_map=False`: skimage `resize(order, mode='edge', anti_aliasing=False)` (nnU-Net's in-plane
    and 3D resampling). `nearest_map=True`: nnU-Net's separate-z step, `map_coordinates` at
    (i + 0.5) * n_in / n_out - 0.5 with `order`, mode 'nearest'."""
    key = (int(n_in), int(n_out), int(order), bool(nearest_map))
    if key not in _MATRIX_CACHE:
        eye = np.eye(n_in)
        if n_in == n_out:
            m = eye
        elif nearest_map:
            coords = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
            m = np.stack([map_coordinates(eye[:, j], coords[None], order=order, mode="nearest")
                          for j in range(n_in)], 1)
        else:
            m = resize(eye, (n_out, n_in), order=order, mode="edge", anti_aliasing=False, clip=False)
        m[np.abs(m) < 1e-8] = 0.0  # spline weights decay geometrically; this keeps the band narrow
        _MATRIX_CACHE[key] = torch.from_numpy(np.ascontiguousarray(m, np.float32))
    return _MATRIX_CACHE[key]


def _separate_axis(current_spacing: Spacing, new_spacing: Spacing, force_separate_z, threshold: float):
    do_sep, axis = determine_do_sep_z_and_axis(force_separate_z, current_spacing, new_spacing, threshold)
    return int(axis) if do_sep else None


def axis_operators(in_shape: Sequence[int], new_shape: Sequence[int], current_spacing: Spacing,
                   new_spacing: Spacing, order: int = 3, order_z: int = 0, force_separate_z=None,
                   separate_z_anisotropy_threshold: float = 3.0) -> Tuple[List[torch.Tensor], Optional[int]]:
    """The three axis matrices of nnU-Net's `resample_data_or_seg` (not segmentations) and the
    separate low-resolution axis (None when the resampling is fully 3D)."""
    sep = _separate_axis(current_spacing, new_spacing, force_separate_z, separate_z_anisotropy_threshold)
    mats = [axis_matrix(i, o, order_z if a == sep else order, nearest_map=a == sep)
            for a, (i, o) in enumerate(zip(in_shape, new_shape))]
    return mats, sep


#: an axis matrix with at most this many non-zeros per row is applied as weighted gathers (linear and
#: nearest interpolation), not as a dense product
MAX_TAPS = 4


def taps(m: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(columns, weights), each (n_out, k), of a matrix with at most MAX_TAPS non-zeros per row, else None."""
    nz = m != 0
    k = int(nz.sum(1).max()) if m.numel() else 0
    if k > MAX_TAPS or k == 0:
        return None
    order = torch.argsort(nz.to(torch.int8), dim=1, descending=True, stable=True)[:, :k].contiguous()
    return order, torch.gather(m, 1, order)


def along(part: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    """`m` (n_out, n_in) applied along dimension `dim` of `part`."""
    found = taps(m)
    if found is None:
        return torch.tensordot(part, m, dims=([dim], [1])).movedim(-1, dim)
    cols, weights = found
    shape = [1] * part.ndim
    shape[dim] = -1
    out = None
    for j in range(cols.shape[1]):
        term = part.index_select(dim, cols[:, j]) * weights[:, j].view(shape)
        out = term if out is None else out.add_(term)
    return out
