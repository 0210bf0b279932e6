"""Our normalised surface Dice against MONAI's compute_surface_dice (use_subvoxels=False): random
shapes with anisotropic spacings and real TotalSegmentator masks, within 0.01 (they agree to 1e-6)."""
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from suprem_nnunet.evaluation.metrics import dice, normalized_surface_dice

from helpers.paths import real_data

TOL = 0.01


def monai_nsd(pred: np.ndarray, gt: np.ndarray, spacing, tolerance_mm: float) -> float:
    from monai.metrics import compute_surface_dice

    def onehot(m):
        return torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))
    return float(compute_surface_dice(onehot(pred), onehot(gt), [tolerance_mm] * 2, include_background=True,
                                      spacing=[float(s) for s in spacing])[0, 1])


def _random_pairs(n: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        shape = tuple(int(s) for s in rng.integers(12, 28, 3))
        spacing = tuple(float(x) for x in rng.choice([0.7, 1.0, 1.5, 2.5, 3.0, 5.0], 3))
        field = ndimage.gaussian_filter(rng.random(shape), 2)
        pred = field > np.quantile(field, rng.uniform(0.5, 0.9))  # blobs, some touching the array border
        gt = ndimage.binary_dilation(pred, iterations=int(rng.integers(0, 2))) ^ (rng.random(shape) > 0.97)
        gt = np.roll(gt, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 3)))
        yield pred, gt, spacing, float(rng.choice([0.5, 1.0, 2.0, 3.0, 5.0]))


def test_nsd_matches_monai_on_random_anisotropic_shapes():
    values = []
    for pred, gt, spacing, tol in _random_pairs():
        ours, ref = normalized_surface_dice(pred, gt, spacing, tol), monai_nsd(pred, gt, spacing, tol)
        assert abs(ours - ref) <= TOL, (spacing, tol, ours, ref)
        values.append(ours)
    assert len(values) >= 20 and min(values) < 0.9  # the shapes really differ


def test_empty_mask_convention_matches_monai():
    a = np.zeros((10, 10, 10), bool)
    a[3:7, 3:7, 3:7] = True
    empty = np.zeros_like(a)
    assert normalized_surface_dice(a, empty, (1, 2, 3), 2) == 0.0 == monai_nsd(a, empty, (1, 2, 3), 2)
    assert normalized_surface_dice(empty, a, (1, 2, 3), 2) == 0.0 == monai_nsd(empty, a, (1, 2, 3), 2)
    assert math.isnan(normalized_surface_dice(empty, empty, (1, 2, 3), 2))
    assert math.isnan(monai_nsd(empty, empty, (1, 2, 3), 2))
    assert dice(a, empty) == 0.0 and math.isnan(dice(empty, empty))


def _mask(name: str):
    img = sitk.ReadImage(str(real_data("totalseg_example_sm", "segmentations", f"{name}.nii.gz")))
    return sitk.GetArrayFromImage(img) > 0, img.GetSpacing()[::-1]


@pytest.mark.slow
@pytest.mark.parametrize("organ", ["liver", "spleen", "kidney_left"])
def test_nsd_matches_monai_on_real_masks(organ):
    gt, spacing = _mask(organ)
    ball = ndimage.generate_binary_structure(3, 1)
    variants = {"dilated": ndimage.binary_dilation(gt, ball, 2), "eroded": ndimage.binary_erosion(gt, ball, 1),
                "shifted": np.roll(gt, (1, 2, -1), axis=(0, 1, 2))}
    values = []
    for what, pred in variants.items():
        for tol in (2.0, 4.0):
            ours, ref = normalized_surface_dice(pred, gt, spacing, tol), monai_nsd(pred, gt, spacing, tol)
            assert abs(ours - ref) <= TOL, (organ, what, tol, ours, ref)
            values.append(ours)
    assert min(values) < 0.5 and max(values) > 0.95  # from far off to (almost) fully within tolerance
