"""Resampling as the release does it: on its grid, and windowing the CT after resampling.

Grid: voxel (0, 0, 0) keeps its centre, as MONAI's Spacingd and SimpleITK's Resample (direct
inference, `zoo.predict.preprocess_ct`) place it. nnU-Net's own resampling
(`resample_data_or_seg_to_shape`) stretches the array so that the outer faces of the first and last
voxels stay put: its grid is shifted by half the difference of the spacings (0.75 mm from 3 mm to
1.5 mm).

Order: the release resamples HU (Spacingd), then clips and scales (ScaleIntensityRanged); nnU-Net
normalises (CTNormalization clips) before resampling, which differs wherever interpolation crosses
the window (bone and air edges). Preset plans therefore use `NoNormalization` and
`resample_then_window`. Both functions have the signature of nnU-Net's resampling functions, so
plans name them per configuration (resolved by `SupremConfigurationManager`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.ndimage import affine_transform

#: dotted names for plans
ORIGIN_ALIGNED = "suprem_nnunet.preprocessing.resampling.resample_origin_aligned"
RESAMPLE_THEN_WINDOW = "suprem_nnunet.preprocessing.resampling.resample_then_window"

Shape = Union[Tuple[int, ...], List[int], np.ndarray]
Spacing = Union[Tuple[float, ...], List[float], np.ndarray]


def resample_origin_aligned(data: Union[torch.Tensor, np.ndarray], new_shape: Shape, current_spacing: Spacing,
                            new_spacing: Spacing, is_seg: bool = False, order: int = 1,
                            **ignored) -> np.ndarray:
    """Resample (c, *spatial) to `new_shape`: output voxel i sits at input position
    i * new_spacing / current_spacing (voxel 0 fixed); beyond the last input voxel the border value
    repeats. Segmentations use nearest neighbour whatever `order` says."""
    if isinstance(data, torch.Tensor):
        data = data.numpy()
    new_shape = tuple(int(n) for n in new_shape)
    if len(new_shape) != data.ndim - 1:
        raise ValueError(f"data of shape {data.shape} (channels first) but new shape {new_shape}")
    if tuple(data.shape[1:]) == new_shape:
        return data
    steps = np.asarray(new_spacing, float) / np.asarray(current_spacing, float)
    out = np.empty((data.shape[0], *new_shape), data.dtype if is_seg else np.float32)
    for c in range(data.shape[0]):
        src = data[c] if is_seg else data[c].astype(np.float32, copy=False)
        affine_transform(src, steps, output_shape=new_shape, output=out[c], order=0 if is_seg else int(order),
                         mode="nearest", prefilter=not is_seg and int(order) > 1)
    return out


def resample_then_window(data: Union[torch.Tensor, np.ndarray], new_shape: Shape, current_spacing: Spacing,
                         new_spacing: Spacing, is_seg: bool = False, order: int = 1,
                         window: Sequence[float] = (-175.0, 250.0), scale_to: Sequence[float] = (0.0, 1.0),
                         **ignored) -> np.ndarray:
    """`resample_origin_aligned`, then clip to `window` (HU) and scale it linearly onto `scale_to`."""
    if is_seg:
        raise ValueError("resample_then_window is for images; resample segmentations with resample_origin_aligned")
    out = resample_origin_aligned(data, new_shape, current_spacing, new_spacing, False, order)
    lo, hi = (float(v) for v in window)
    s0, s1 = (float(v) for v in scale_to)
    if hi <= lo:
        raise ValueError(f"intensity window {window} is empty")
    return ((np.clip(out, lo, hi) - lo) * ((s1 - s0) / (hi - lo)) + s0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------
# nnU-Net's default resampling (`resample_data_or_seg_to_shape`: skimage `resize`, spline order 3 for
# images, order 1 for class logits, nearest along a separate low-resolution axis) computed as three
# 1D linear operators applied with torch matrix products. skimage's spline resize is separable: the
# prefilter runs along each axis in turn and the interpolation weights are a tensor product, so each
# axis is one (n_out x n_in) matrix, obtained by resizing an identity matrix with skimage itself.
# Same numbers as nnU-Net's (float32 instead of float64), about an order of magnitude faster, and
# chunked along the first output axis so that no full-size float64 copy is ever made.
# --------------------------------------------------------------------------------------------------

#: dotted name for plans (nnU-Net's default data resampling, computed with torch)
NNUNET_DEFAULT_TORCH = "suprem_nnunet.preprocessing.resampling.resample_like_nnunet"
_MATRIX_CACHE: dict = {}


def axis_matrix(n_in: int, n_out: int, order: int, nearest_map: bool = False) -> torch.Tensor:
    """(n_out, n_in) float32 matrix M with resample(x) = M @ x along one axis.

    `nearest_map=False`: skimage `resize(order, mode='edge', anti_aliasing=False)` (nnU-Net's in-plane
    and 3D resampling). `nearest_map=True`: nnU-Net's separate-z step, `map_coordinates` at
    (i + 0.5) * n_in / n_out - 0.5 with `order`, mode 'nearest'."""
    key = (int(n_in), int(n_out), int(order), bool(nearest_map))
    if key not in _MATRIX_CACHE:
        from scipy.ndimage import map_coordinates
        from skimage.transform import resize

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
    from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

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


def _band(m: torch.Tensor, rows: slice) -> Tuple[int, int]:
    cols = torch.nonzero(m[rows].abs().sum(0)).flatten()
    return (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 1)


def iter_resampled_chunks(data: Union[torch.Tensor, np.ndarray], mats: Sequence[torch.Tensor],
                          sep: Optional[int] = None, clip: bool = False, chunk: int = 8):
    """Yield (output rows of axis 0, float32 tensor (c, rows, y', z')) of `data` (c, x, y, z) resampled
    with the axis matrices. `clip` reproduces skimage's clipping of spline output to the input range
    (per channel; per input slice of the separate axis `sep`, as nnU-Net resizes slice by slice)."""
    x = torch.as_tensor(data)
    m0, m1, m2 = mats
    lo = hi = None
    if clip:
        flat = x.movedim(sep + 1, 1) if sep is not None else x
        dims = tuple(range(2, flat.ndim)) if sep is not None else tuple(range(1, flat.ndim))
        lo, hi = flat.amin(dim=dims).float(), flat.amax(dim=dims).float()  # (c,) or (c, n_sep)
    for r0 in range(0, m0.shape[0], chunk):
        rows = slice(r0, min(r0 + chunk, m0.shape[0]))
        if sep == 0:  # the separate axis is resampled last, after clipping the in-plane result
            c0, c1 = _band(m0, rows)
            part = x[:, c0:c1].float()
            part = torch.einsum("cxyz,Yy->cxYz", part, m1)
            part = torch.einsum("cxYz,Zz->cxYZ", part, m2)
            if clip:
                part = torch.maximum(torch.minimum(part, hi[:, c0:c1, None, None]), lo[:, c0:c1, None, None])
            yield rows, torch.einsum("cxYZ,Xx->cXYZ", part, m0[rows, c0:c1])
            continue
        c0, c1 = _band(m0, rows)
        part = torch.einsum("cxyz,Xx->cXyz", x[:, c0:c1].float(), m0[rows, c0:c1])
        if sep == 1:
            part = torch.einsum("cXyz,Zz->cXyZ", part, m2)
            if clip:
                part = torch.maximum(torch.minimum(part, hi[:, None, :, None]), lo[:, None, :, None])
            part = torch.einsum("cXyZ,Yy->cXYZ", part, m1)
        elif sep == 2:
            part = torch.einsum("cXyz,Yy->cXYz", part, m1)
            if clip:
                part = torch.maximum(torch.minimum(part, hi[:, None, None, :]), lo[:, None, None, :])
            part = torch.einsum("cXYz,Zz->cXYZ", part, m2)
        else:
            part = torch.einsum("cXyz,Yy->cXYz", part, m1)
            part = torch.einsum("cXYz,Zz->cXYZ", part, m2)
            if clip:
                part = torch.maximum(torch.minimum(part, hi[:, None, None, None]), lo[:, None, None, None])
        yield rows, part


def _chunk_rows(num_channels: int, out_shape: Sequence[int], budget_bytes: int = 256 * 2 ** 20) -> int:
    per_row = 4 * num_channels * int(np.prod(out_shape[1:])) * 3  # float32, a few temporaries
    return max(1, min(int(out_shape[0]), budget_bytes // max(per_row, 1)))


def resample_like_nnunet(data: Union[torch.Tensor, np.ndarray], new_shape: Shape, current_spacing: Spacing,
                         new_spacing: Spacing, is_seg: bool = False, order: int = 3, order_z: int = 0,
                         force_separate_z=None, separate_z_anisotropy_threshold: float = 3.0,
                         **ignored) -> np.ndarray:
    """Drop-in for nnU-Net's `resample_data_or_seg_to_shape` (same signature and result within float32
    rounding), computed with torch matrix products. Segmentations go to nnU-Net's own function."""
    new_shape = tuple(int(n) for n in new_shape)
    if is_seg:
        from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

        return resample_data_or_seg_to_shape(data, new_shape, current_spacing, new_spacing, True, order, order_z,
                                             force_separate_z, separate_z_anisotropy_threshold)
    arr = data.numpy() if isinstance(data, torch.Tensor) else data
    if tuple(arr.shape[1:]) == new_shape:
        return arr
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32
    mats, sep = axis_operators(arr.shape[1:], new_shape, current_spacing, new_spacing, order, order_z,
                               force_separate_z, separate_z_anisotropy_threshold)
    out = torch.empty((arr.shape[0], *new_shape), dtype=torch.float32)
    for rows, part in iter_resampled_chunks(torch.from_numpy(np.ascontiguousarray(arr)), mats, sep,
                                            clip=int(order) > 1, chunk=_chunk_rows(arr.shape[0], new_shape)):
        out[:, rows] = part
    return out.numpy().astype(dtype, copy=False)


def resample_logits_to_labels(logits: Union[torch.Tensor, np.ndarray], new_shape: Shape, current_spacing: Spacing,
                              new_spacing: Spacing, order: int = 1, order_z: int = 0, force_separate_z=None,
                              separate_z_anisotropy_threshold: float = 3.0,
                              budget_bytes: int = 256 * 2 ** 20) -> np.ndarray:
    """argmax over classes of nnU-Net's probability resampling (`resampling_fn_probabilities` with its
    default kwargs) of `logits` (c, x, y, z), computed a few output slices at a time: the full-size
    (c, *new_shape) array nnU-Net makes (32 classes x a 512x512x600 CT = 20 GB) is never allocated."""
    new_shape = tuple(int(n) for n in new_shape)
    x = torch.as_tensor(logits)
    mats, sep = axis_operators(x.shape[1:], new_shape, current_spacing, new_spacing, order, order_z,
                               force_separate_z, separate_z_anisotropy_threshold)
    out = np.empty(new_shape, np.uint8 if x.shape[0] < 256 else np.uint16)
    for rows, part in iter_resampled_chunks(x, mats, sep, clip=int(order) > 1,
                                            chunk=_chunk_rows(x.shape[0], new_shape, budget_bytes)):
        out[rows] = part.argmax(0).numpy()
    return out
