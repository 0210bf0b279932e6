import math

import numpy as np
import pytest

from suprem_nnunet.evaluation.compare import mean_sd_over_trials, paired_comparison
from suprem_nnunet.evaluation.metrics import dice, normalized_surface_dice


def _cube(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


def test_dice_values():
    a = _cube((20, 20, 20), (5, 5, 5), (15, 15, 15))
    b = _cube((20, 20, 20), (5, 5, 10), (15, 15, 20))
    assert dice(a, a) == 1.0
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, np.zeros_like(a)) == 0.0
    assert math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))


def test_nsd_tolerance_and_anisotropy():
    a = _cube((30, 30, 30), (8, 8, 8), (20, 20, 20))
    b = _cube((30, 30, 30), (8, 8, 9), (20, 20, 21))  # shifted one voxel along x
    assert normalized_surface_dice(a, a, (1, 1, 1), 0.0) == 1.0
    assert normalized_surface_dice(a, b, (1, 1, 1), 1.0) == 1.0  # 1 mm shift within 1 mm
    below = normalized_surface_dice(a, b, (1, 1, 1), 0.5)
    assert 0.5 < below < 1.0
    # the same voxel shift along x is 3 mm when x voxels are 3 mm wide
    assert normalized_surface_dice(a, b, (1, 1, 3), 2.0) < 1.0
    assert normalized_surface_dice(a, b, (1, 1, 3), 3.0) == 1.0
    assert normalized_surface_dice(a, np.zeros_like(a), (1, 1, 1), 2) == 0.0
    assert math.isnan(normalized_surface_dice(np.zeros_like(a), np.zeros_like(a), (1, 1, 1), 2))


def test_paired_comparison_and_trials():
    def res(vals):
        return {"summary": {"liver": {}}, "per_case": [{"case": f"c{i}", "class": "liver", "dsc": v}
                                                       for i, v in enumerate(vals)]}
    cmp = paired_comparison(res([0.9, 0.8, 0.85, 0.95]), res([0.7, 0.65, 0.7, 0.8]))["liver"]
    assert cmp["n"] == 4 and cmp["diff"] == pytest.approx(0.1625) and cmp["p"] < 0.01
    assert mean_sd_over_trials([0.8, 0.9, float("nan")]) == "0.850 ± 0.071"
