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

from typing import List, Sequence, Tuple, Union

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
