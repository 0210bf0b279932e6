"""The review benchmark's pieces: the unusual phantoms are what they claim, precision@k is right."""
from __future__ import annotations

import numpy as np
import pytest

from suprem_nnunet.benchmarks.flywheel import BenchmarkConfig, case_lists, make_unusual_generator, precision_at_k

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


def test_heldout_set_is_the_same_for_every_seed():
    a, b = case_lists(BenchmarkConfig(seed=0)), case_lists(BenchmarkConfig(seed=1))
    assert a["heldout"] == b["heldout"] and a["pool"] != b["pool"]
    assert sum(k is not None for _, k, _ in a["heldout"]) == 12  # two of each unusual kind


def _per_seed(gain: dict, seeds=(0, 1, 2), cases=8):
    """Synthetic run_benchmark results: arm DSC per case = base + the arm's gain + seeded noise."""
    from suprem_nnunet.benchmarks.flywheel import ARMS

    out = {}
    for s in seeds:
        rng = np.random.default_rng(s)
        base = rng.uniform(0.4, 0.8, cases)
        fw = {"k": 3, "unusual_chosen": {"top-k": 2, "random-k": 1, "AI labels": 0}}
        for arm in ARMS:
            dsc = base + gain[arm] + rng.normal(0, 0.005, cases)
            fw[arm] = {"mean_dsc": float(dsc.mean()), "normal_dsc": float(dsc[:4].mean()),
                       "unusual_dsc": float(dsc[4:].mean()), "per_case_dsc": {f"h{i}": float(v) for i, v in enumerate(dsc)}}
        ranking = {"spearman": 0.5, "precision_at_k_worst": 0.67, "precision_at_k_unusual": 0.67, "n_cases": 12,
                   "base_rate_unusual": 0.25, "per_case": [{"kind": k} for k in ("large_tumour", "normal", "heavy_noise")]}
        out[s] = {"flywheel": fw, "ranking": ranking, "timings": {}}
    return out


def test_flywheel_statistics_pair_seeds_and_cases():
    """n = 3 seeds (paired t over seed means) and n = 8 held-out cases (Wilcoxon over seed-averaged DSC):
    a consistent +0.05 for top-k is significant against random-k, no difference is not."""
    from suprem_nnunet.benchmarks.flywheel import flywheel_statistics, format_seeds

    st = flywheel_statistics(_per_seed({"no retraining": 0.0, "AI labels": 0.05, "top-k": 0.1, "random-k": 0.05}))
    t = st["tests_top_k_vs"]["random-k"]
    assert t["paired_t_over_seeds"]["n"] == 3 and t["paired_t_over_seeds"]["p"] < 0.05
    assert t["seeds_top_k_better"] == 3 and t["mean_difference"] == pytest.approx(0.05, abs=0.01)
    w = t["wilcoxon_over_cases"]
    assert w["n"] == 8 and w["cases_top_k_better"] == 8 and w["p"] < 0.05
    assert st["unusual_in_chosen"][0] == {"top-k": 2, "random-k": 1, "pool_unusual": 3, "k": 3,
                                          "top_k_kinds": ["heavy_noise", "large_tumour"]}
    assert "| top-k |" in format_seeds(st)
    worse = flywheel_statistics(_per_seed({"no retraining": 0.0, "AI labels": 0.05, "top-k": 0.0, "random-k": 0.05}))
    t = worse["tests_top_k_vs"]["random-k"]
    assert t["seeds_top_k_better"] == 0 and t["mean_difference"] < -0.04
