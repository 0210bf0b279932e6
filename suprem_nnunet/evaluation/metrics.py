"""Overlap and surface metrics on binary masks (arrays in (z, y, x) order, spacing in mm).

Empty masks, for both metrics: both masks empty -> NaN (nothing to score; left out of means and
counts, see `evaluate._stats`); exactly one empty -> 0.0. For DSC this is nnU-Net's convention
(`nnunetv2.evaluation.evaluate_predictions.compute_metrics`: NaN when TP + FP + FN = 0, else
2TP / (2TP + FP + FN), so an empty GT with a non-empty prediction scores 0), not MONAI's
`compute_dice` (ignore_empty=True by default: an empty GT gives NaN whatever the prediction).
For NSD it is MONAI's `compute_surface_dice` convention (both empty NaN, one empty 0).
`dice` equals nnU-Net's Dice and `normalized_surface_dice` MONAI's `compute_surface_dice`
(use_subvoxels=False) to within 1e-6 (tests/integration/test_evaluation_sided.py and
tests/unit/test_evaluation_nsd.py).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice similarity coefficient; NaN when both masks are empty."""
    p, g = pred.astype(bool), gt.astype(bool)
    denom = p.sum() + g.sum()
    if denom == 0:
        return float("nan")
    return float(2.0 * np.logical_and(p, g).sum() / denom)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels: the mask minus its 6-connected erosion (border of the array counts as outside)."""
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return mask & ~eroded


def _crop(pred: np.ndarray, gt: np.ndarray, margin: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(pred | gt)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + np.asarray(margin) + 1, pred.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    return pred[sl], gt[sl]


def normalized_surface_dice(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float],
                            tolerance_mm: float = 2.0) -> float:
    """Normalised surface Dice (Nikolov et al. 2021): the share of both surfaces' voxels lying within
    `tolerance_mm` (distance <= tolerance) of the other surface. NaN when both masks are empty, 0.0
    when exactly one is.

    `spacing` is in array axis order (z, y, x). A surface is the set of mask voxels with a
    6-connected neighbour outside the mask (outside the array counts as outside); each surface voxel
    counts once (no sub-voxel areas). Distances are Euclidean between voxel centres, with the
    anisotropic spacing. This is MONAI's `compute_surface_dice` with use_subvoxels=False.
    """
    p, g = pred.astype(bool), gt.astype(bool)
    if not p.any() and not g.any():
        return float("nan")
    if not p.any() or not g.any():
        return 0.0
    margin = [int(np.ceil(tolerance_mm / s)) + 2 for s in spacing]
    p, g = _crop(p, g, margin)
    sp, sg = _surface(p), _surface(g)
    dist_to_g = ndimage.distance_transform_edt(~sg, sampling=spacing)
    dist_to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    close = (dist_to_g[sp] <= tolerance_mm).sum() + (dist_to_p[sg] <= tolerance_mm).sum()
    return float(close / (sp.sum() + sg.sum()))
