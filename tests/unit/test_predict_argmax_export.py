"""Export by argmax only where the network-grid neighbours disagree (preprocessing/argmax_export.py).

Proves: the label map equals the dense computation (every class resampled at every output voxel,
`uniform_shortcut=False`, itself tested against nnU-Net's export in test_predict_fast_path.py) for
organ-like logits on an isotropic grid and on an anisotropic one resampled with nearest neighbour
along z; exact ties keep the first-index rule; only a small share of the output voxels is computed
densely; spline (order 3) operators and noise-like logits fall back to the dense path.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from suprem_nnunet.preprocessing import argmax_export
from suprem_nnunet.preprocessing.axis_operators import axis_operators
from suprem_nnunet.preprocessing.resampling import resample_logits_to_labels


def organ_logits(shape, classes=9, seed=0) -> torch.Tensor:
    """Background 0; class k: a smooth bump around a random centre (organs of a few voxels' radius)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    out = [np.zeros(shape, np.float32)]
    for _ in range(classes - 1):
        c = rng.uniform(0, 1, 3) * np.array(shape)
        r = rng.uniform(0.15, 0.3) * min(shape)
        d2 = sum(((g - ci) / r) ** 2 for g, ci in zip(grid, c))
        out.append((1.0 - d2).clip(-2, None) * 5 + rng.normal(0, 0.05, shape).astype(np.float32))
    return torch.from_numpy(np.stack(out).astype(np.float32))


@pytest.mark.parametrize("shape, new, cur, tgt", [
    ((24, 30, 20), (45, 57, 31), (1.5, 1.5, 1.5), (0.8, 0.79, 0.97)),  # isotropic: linear on every axis
    ((10, 32, 30), (37, 50, 47), (4.5, 1.0, 1.0), (1.2, 0.64, 0.64)),  # anisotropic: nearest along z
])
def test_equals_the_dense_export(shape, new, cur, tgt, monkeypatch):
    x = organ_logits(shape)
    dense = resample_logits_to_labels(x, new, cur, tgt, uniform_shortcut=False)
    computed = []
    real = argmax_export._fill_mixed
    monkeypatch.setattr(argmax_export, "_fill_mixed", lambda x_, t, where, out, row0=0: (
        computed.append(len(where)), real(x_, t, where, out, row0)))
    monkeypatch.setattr(argmax_export, "SLAB_ROWS", 5)  # several slabs
    fast = resample_logits_to_labels(x, new, cur, tgt)
    assert computed, "the shortcut was not taken"
    assert np.array_equal(fast, dense) and len(np.unique(dense)) >= 6
    assert len(computed) > 1 and 0 < sum(computed) < 0.25 * dense.size


def test_ties_keep_the_first_index():
    x = torch.zeros((4, 8, 8, 8))
    x[2, 4:] = 1.0
    x[3, 4:] = 1.0  # classes 2 and 3 tie everywhere they lead: argmax says 2
    x[1, :, :3] = 0.0  # class 1 ties with background there: argmax says 0
    got = resample_logits_to_labels(x, (13, 11, 9), (1.0, 1.0, 1.0), (0.6, 0.7, 0.9))
    want = resample_logits_to_labels(x, (13, 11, 9), (1.0, 1.0, 1.0), (0.6, 0.7, 0.9), uniform_shortcut=False)
    assert np.array_equal(got, want) and set(np.unique(got)) == {0, 2}


def test_falls_back_for_splines_and_noise():
    mats, _ = axis_operators((12, 12, 12), (20, 20, 20), (1, 1, 1), (0.6, 0.6, 0.6), 3, 0, None, 3.0)
    assert argmax_export.labels_from_logits(organ_logits((12, 12, 12)), mats) is None  # cubic: negative weights
    mats, _ = axis_operators((12, 12, 12), (20, 20, 20), (1, 1, 1), (0.6, 0.6, 0.6), 1, 0, None, 3.0)
    noise = torch.from_numpy(np.random.default_rng(0).normal(size=(9, 12, 12, 12)).astype(np.float32))
    assert argmax_export.labels_from_logits(noise, mats) is None  # nearly every voxel mixed: dense is faster
    mats, _ = axis_operators((24, 24, 24), (40, 40, 40), (1, 1, 1), (0.6, 0.6, 0.6), 1, 0, None, 3.0)
    assert argmax_export.labels_from_logits(organ_logits((24, 24, 24), classes=4), mats) is not None
