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

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.ndimage import affine_transform
from ..errors import InputError

from .argmax_export import labels_from_logits
from .axis_operators import Shape, Spacing, along, axis_matrix, axis_operators

#: dotted names for plans
ORIGIN_ALIGNED = "suprem_nnunet.preprocessing.resampling.resample_origin_aligned"
RESAMPLE_THEN_WINDOW = "suprem_nnunet.preprocessing.resampling.resample_then_window"


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
        raise InputError(f"data of shape {data.shape} (channels first) but new shape {new_shape}")
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
        raise InputError("resample_then_window is for images; resample segmentations with resample_origin_aligned")
    out = resample_origin_aligned(data, new_shape, current_spacing, new_spacing, False, order)
    lo, hi = (float(v) for v in window)
    s0, s1 = (float(v) for v in scale_to)
    if hi <= lo:
        raise InputError(f"intensity window {window} is empty")
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
def _band(m: torch.Tensor, rows: slice) -> Tuple[int, int]:
    cols = torch.nonzero(m[rows].abs().sum(0)).flatten()
    return (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 1)


def iter_resampled_chunks(data: Union[torch.Tensor, np.ndarray], mats: Sequence[torch.Tensor],
                          sep: Optional[int] = None, clip: bool = False, chunk: int = 8, channels=None):
    """Yield (output rows of axis 0, float32 tensor (c, rows, y', z')) of `data` (c, x, y, z) resampled
    with the axis matrices. `clip` reproduces skimage's clipping of spline output to the input range
    (per channel; per input slice of the separate axis `sep`, as nnU-Net resizes slice by slice).
    `channels`: a function turning a band of input slices into the float channels to resample (e.g.
    one indicator per label), so that they are never made for the whole input."""
    x = torch.as_tensor(data)
    if channels is not None:
        x = _LazyChannels(x, channels)
    m0, m1, m2 = mats
    lo = hi = None
    if clip:
        flat = x.movedim(sep + 1, 1) if sep is not None else x
        dims = tuple(range(2, flat.ndim)) if sep is not None else tuple(range(1, flat.ndim))
        lo, hi = flat.amin(dim=dims).float(), flat.amax(dim=dims).float()  # (c,) or (c, n_sep)
    def clipped(part, lo_, hi_):
        return torch.maximum(torch.minimum(part, hi_), lo_) if clip else part

    for r0 in range(0, m0.shape[0], chunk):
        rows = slice(r0, min(r0 + chunk, m0.shape[0]))
        c0, c1 = _band(m0, rows)
        part = x[:, c0:c1].float()
        if sep == 0:  # the separate axis is resampled last, after clipping the in-plane result
            part = along(along(part, m1, 2), m2, 3)
            if clip:
                part = clipped(part, lo[:, c0:c1, None, None], hi[:, c0:c1, None, None])
            yield rows, along(part, m0[rows, c0:c1], 1)
            continue
        part = along(part, m0[rows, c0:c1], 1)
        if sep == 1:
            part = along(clipped(along(part, m2, 3), lo[:, None, :, None], hi[:, None, :, None]) if clip
                          else along(part, m2, 3), m1, 2)
        elif sep == 2:
            part = along(clipped(along(part, m1, 2), lo[:, None, None, :], hi[:, None, None, :]) if clip
                          else along(part, m1, 2), m2, 3)
        else:
            part = along(along(part, m1, 2), m2, 3)
            if clip:
                part = clipped(part, lo[:, None, None, None], hi[:, None, None, None])
        yield rows, part


class _LazyChannels:
    """`data[:, a:b]` gives channels(data[:, a:b]) (what `iter_resampled_chunks` slices, bands of axis 0)."""

    def __init__(self, data: torch.Tensor, channels) -> None:
        self.data, self.channels = data, channels

    def __getitem__(self, key):
        return self.channels(self.data[key])


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


def sub_operators(mats: Sequence[torch.Tensor], input_box: Sequence[slice]):
    """(input slices, output slices, axis matrices) that compute exactly the output voxels the input box
    reaches, from the input they depend on; None when the box reaches no output voxel."""
    in_box, out_box, sub = [], [], []
    for m, b in zip(mats, input_box):
        reached = torch.nonzero(m[:, b].abs().sum(1)).flatten()
        if not len(reached):
            return None
        rows = slice(int(reached[0]), int(reached[-1]) + 1)
        cols = torch.nonzero(m[rows].abs().sum(0)).flatten()
        cols = slice(int(cols[0]), int(cols[-1]) + 1)
        out_box.append(rows), in_box.append(cols), sub.append(m[rows, cols].contiguous())
    return tuple(in_box), tuple(out_box), sub


def resample_logits_to_labels(logits: Union[torch.Tensor, np.ndarray], new_shape: Shape, current_spacing: Spacing,
                              new_spacing: Spacing, order: int = 1, order_z: int = 0, force_separate_z=None,
                              separate_z_anisotropy_threshold: float = 3.0,
                              budget_bytes: int = 256 * 2 ** 20,
                              input_box: Optional[Sequence[slice]] = None, uniform_shortcut: bool = True) -> np.ndarray:
    """argmax over classes of nnU-Net's probability resampling (`resampling_fn_probabilities` with its
    default kwargs) of `logits` (c, x, y, z), computed a few output slices at a time: the full-size
    (c, *new_shape) array nnU-Net makes (32 classes x a 512x512x600 CT = 20 GB) is never allocated.

    `input_box` (slices of the logits' grid): only the output voxels that this box's voxels reach are
    computed (the same numbers as without a box), every other voxel is 0 (background).

    `uniform_shortcut` (linear/nearest resampling only): classes are resampled only at output voxels
    whose network-grid neighbours disagree on the label (`argmax_export.py`); elsewhere the label is
    theirs, which is what the full computation gives."""
    new_shape = tuple(int(n) for n in new_shape)
    x = torch.as_tensor(logits)
    mats, sep = axis_operators(x.shape[1:], new_shape, current_spacing, new_spacing, order, order_z,
                               force_separate_z, separate_z_anisotropy_threshold)
    out = np.zeros(new_shape, np.uint8 if x.shape[0] < 256 else np.uint16)
    out_box = tuple(slice(0, n) for n in new_shape)
    if input_box is not None:
        sub = sub_operators(mats, input_box)
        if sub is None:
            return out
        in_box, out_box, mats = sub
        x = x[(slice(None), *in_box)]
    box_shape = tuple(b.stop - b.start for b in out_box)
    if int(order) <= 1 and uniform_shortcut:
        if labels_from_logits(x, mats, out[out_box]) is not None:  # written into out in place
            return out
    target = out[out_box]
    for rows, part in iter_resampled_chunks(x, mats, sep, clip=int(order) > 1,
                                            chunk=_chunk_rows(x.shape[0], box_shape, budget_bytes)):
        target[rows] = part.argmax(0).numpy()
    return out


def _present_labels(channel: np.ndarray) -> np.ndarray:
    """Sorted label values present in an integer array (a histogram for small integer types)."""
    if channel.dtype.itemsize <= 2 and np.issubdtype(channel.dtype, np.integer):
        info = np.iinfo(channel.dtype)
        counts = np.bincount((channel.ravel().astype(np.int32) - info.min), minlength=1)
        return np.flatnonzero(counts).astype(np.int64) + info.min
    return np.unique(channel)


def resample_seg_like_nnunet(data: Union[torch.Tensor, np.ndarray], new_shape: Shape, current_spacing: Spacing,
                             new_spacing: Spacing, is_seg: bool = True, order: int = 1, order_z: int = 0,
                             force_separate_z=None, separate_z_anisotropy_threshold: float = 3.0,
                             budget_bytes: int = 128 * 2 ** 20, **ignored) -> np.ndarray:
    """Drop-in for nnU-Net's `resample_data_or_seg_to_shape(is_seg=True)` with its default order 1
    (nearest along a separate low-resolution axis), as batchgenerators' `resize_segmentation` computes
    it: each label's indicator is resampled linearly (skimage's order-1 `resize`, as axis matrices) and
    a voxel takes the label with the largest score; a tie goes to the nearest neighbour's label when it
    is among the tied, else to the smallest label. Computed with torch a few output slices at a time
    (float32 scores instead of float64: a voxel whose scores tie only within rounding may differ).
    Other orders, and images, go to nnU-Net's own function."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    new_shape = tuple(int(n) for n in new_shape)
    arr = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if tuple(arr.shape[1:]) == new_shape:
        return arr
    if not is_seg or int(order) != 1 or int(order_z) != 0:
        return resample_data_or_seg_to_shape(arr, new_shape, current_spacing, new_spacing, is_seg, order, order_z,
                                             force_separate_z, separate_z_anisotropy_threshold)
    from scipy.ndimage import find_objects

    mats, sep = axis_operators(arr.shape[1:], new_shape, current_spacing, new_spacing, 1, 0, force_separate_z,
                               separate_z_anisotropy_threshold)
    nearest = [m if a == sep else axis_matrix(m.shape[1], m.shape[0], 0) for a, m in enumerate(mats)]
    out = np.empty((arr.shape[0], *new_shape), arr.dtype)
    for c in range(arr.shape[0]):
        channel = torch.from_numpy(np.ascontiguousarray(arr[c]))[None]
        labels = _present_labels(arr[c])
        if len(labels) == 1:
            out[c] = labels[0]
            continue
        nn_value = torch.empty(new_shape)
        for rows, part in iter_resampled_chunks(channel, nearest, sep, chunk=_chunk_rows(1, new_shape, budget_bytes)):
            nn_value[rows] = part[0]
        nn_value = nn_value.round_().to(torch.int64)
        best = torch.full(new_shape, -1.0)
        winner = torch.zeros(new_shape, dtype=torch.int64)
        nn_score = torch.zeros(new_shape)
        shift = 1 - int(labels[0])  # find_objects wants labels 1..n
        boxes = find_objects((arr[c].astype(np.int64) + shift) if shift else arr[c].astype(np.int64, copy=False))
        for i, label in enumerate(labels):
            box = boxes[int(label) + shift - 1]
            grown = [slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, arr.shape[1:])]
            reach = sub_operators(mats, grown)
            if reach is None:  # the label's voxels reach no output voxel (a tiny label, strong downsampling)
                continue
            in_box, out_box, sub = reach
            indicator = (channel[(slice(None), *in_box)] == int(label))
            out_shape = tuple(b.stop - b.start for b in out_box)
            for rows, part in iter_resampled_chunks(indicator, sub, sep,
                                                    chunk=_chunk_rows(1, out_shape, budget_bytes)):
                sl = (slice(out_box[0].start + rows.start, out_box[0].start + rows.stop), *out_box[1:])
                score, b, w, ns = part[0], best[sl], winner[sl], nn_score[sl]
                ns[nn_value[sl] == int(label)] = score[nn_value[sl] == int(label)]
                better = score > b  # strict: a tie stays with the smaller label
                w[better] = i
                torch.maximum(b, score, out=b)
        nn_index = torch.from_numpy(np.searchsorted(labels, nn_value.numpy()).clip(max=len(labels) - 1))
        use_nn = (nn_score == best) & (best > 0) & (torch.from_numpy(labels)[nn_index] == nn_value)
        out[c] = labels[torch.where(use_nn, nn_index, winner).numpy()]
    return out
