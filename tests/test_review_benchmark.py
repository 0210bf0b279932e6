"""The review benchmark's pieces: the unusual phantoms are what they claim, precision@k is right."""
from __future__ import annotations

import numpy as np
import pytest

from suprem_nnunet.review.benchmark import BenchmarkConfig, case_lists, make_unusual_generator, precision_at_k

SHAPE, SPACING = (28, 28, 28), (12.0, 12.0, 12.0)


def _case(kind, **kw):
    return make_unusual_generator(5, kind)(SHAPE, SPACING, "LPS", **kw)


def test_unusual_phantoms_differ_from_the_normal_case_as_named():
    normal = _case(None)
    assert normal.masks["spleen"].sum() > 0
    assert _case("missing_organ").masks["spleen"].sum() == 0
    assert _case("enlarged_organ").masks["liver"].sum() > 1.5 * normal.masks["liver"].sum()
    moved = _case("displaced_organ").masks["kidney_right"]
    assert np.argwhere(moved)[:, 0].mean() < np.argwhere(normal.masks["kidney_right"])[:, 0].mean() - 3  # lower z
    big = _case("large_tumour")
    assert big.masks["liver_tumor"].sum() > 0.15 * (big.masks["liver"].sum() + big.masks["liver_tumor"].sum())
    assert (big.label_map(["liver"], True) == 1).sum() == big.masks["liver"].sum() + big.masks["liver_tumor"].sum()


def test_case_lists_and_precision_at_k():
    lists = case_lists(BenchmarkConfig())
    seeds = [s for part in lists.values() for _, _, s in part]
    assert len(seeds) == len(set(seeds))
    assert sum(k is not None for _, k, _ in lists["pool"]) == 6 and len(lists["pool"]) == 24
    assert precision_at_k(["a", "b", "c", "d"], ["b", "d", "x"], 2) == pytest.approx(0.5)
