"""Experiment statistics against values computed by hand (formulas, then scipy's t distribution)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from suprem_nnunet.experiments import stats

A = [0.81, 0.84, 0.79, 0.86, 0.83]
B = [0.74, 0.78, 0.71, 0.80, 0.73, 0.76]


def test_two_sample_is_students_t_test():
    na, nb = len(A), len(B)
    ma, mb = np.mean(A), np.mean(B)
    pooled = ((na - 1) * np.var(A, ddof=1) + (nb - 1) * np.var(B, ddof=1)) / (na + nb - 2)
    t = (ma - mb) / math.sqrt(pooled * (1 / na + 1 / nb))
    p = 2 * sps.t.sf(abs(t), na + nb - 2)
    assert stats.two_sample(A, B) == pytest.approx(p, rel=1e-10)
    assert stats.two_sample(A + [float("nan")], B) == pytest.approx(p, rel=1e-10)  # NaN left out
    assert stats.significant(stats.two_sample(A, B))


def test_one_sample_against_a_mean():
    mu = 0.8
    t = (np.mean(A) - mu) / (np.std(A, ddof=1) / math.sqrt(len(A)))
    assert stats.one_sample(A, mu) == pytest.approx(2 * sps.t.sf(abs(t), len(A) - 1), rel=1e-10)


def test_paired_over_shared_keys_only():
    a = {("0", 0, "c1"): 0.9, ("0", 0, "c2"): 0.7, ("0", 1, "c1"): 0.85, ("0", 1, "c2"): 0.72, ("x", 9, "z"): 0.1}
    b = {("0", 0, "c1"): 0.8, ("0", 0, "c2"): 0.66, ("0", 1, "c1"): 0.8, ("0", 1, "c2"): 0.6}
    d = np.array([0.1, 0.04, 0.05, 0.12])
    t = d.mean() / (d.std(ddof=1) / 2)
    p, n = stats.paired(a, b)
    assert n == 4 and p == pytest.approx(2 * sps.t.sf(abs(t), 3), rel=1e-10)


def test_undefined_tests_are_nan_not_errors():
    assert math.isnan(stats.two_sample([0.5], B))
    assert math.isnan(stats.two_sample([0.5, 0.5], [0.5, 0.5]))
    assert math.isnan(stats.one_sample([0.7], 0.5))
    assert math.isnan(stats.paired({1: 0.5, 2: 0.6}, {1: 0.4, 2: 0.5})[0])  # constant differences
    s = stats.summarize([0.7])
    assert (s.mean, s.sd, s.n) == (0.7, 0.0, 1) and str(stats.summarize([])) == "n/a"
    assert str(stats.summarize([0.8, 0.82, 0.81])) == "0.810 ± 0.010"


def test_bootstrap_ci_is_the_seeded_percentile_bootstrap():
    lo, hi = stats.bootstrap_diff_ci(A, B, seed=3, resamples=2000)
    rng = np.random.default_rng(3)
    x, y = np.array(A), np.array(B)
    diffs = (x[rng.integers(0, 5, (2000, 5))].mean(1) - y[rng.integers(0, 6, (2000, 6))].mean(1))
    assert (lo, hi) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
    assert lo < np.mean(A) - np.mean(B) < hi
    plo, phi = stats.bootstrap_diff_ci(A, A[::-1], paired_samples=True, seed=0)
    assert plo < 0 < phi
    d = np.array(A) - np.array(B[:5])
    plo, phi = stats.bootstrap_diff_ci(A, B[:5], paired_samples=True, seed=1, resamples=500)
    rng = np.random.default_rng(1)
    ref = np.percentile(d[rng.integers(0, 5, (500, 5))].mean(1), [2.5, 97.5])
    assert (plo, phi) == pytest.approx(tuple(ref))
