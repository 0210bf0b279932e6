"""Experiment statistics against values computed by hand (formulas, then scipy's distributions).

Units: `two_sample` and `paired` take one value per unit (a trial, or a test case); `case_paired`
and `cluster_bootstrap_diff_ci` take {(trial, case): value} of a trials × test cases design, where
the same test cases recur in every trial."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from suprem_nnunet.experiments import stats

A = [0.81, 0.84, 0.79, 0.86, 0.83]
B = [0.74, 0.78, 0.71, 0.80, 0.73, 0.76]
# one trial of two arms on four test cases (unit: case, n = 4)
CASE_A = {"c0": 0.80, "c1": 0.62, "c2": 0.91, "c3": 0.70}
CASE_B = {"c0": 0.71, "c1": 0.66, "c2": 0.78, "c3": 0.52}


def trials_of(per_case, k, shift=()):
    """{(trial, case): value} of k trials; trial t adds shift[t] (default: k identical copies)."""
    return {(t, c): v + (shift[t] if shift else 0.0) for t in range(k) for c, v in per_case.items()}


def test_two_sample_is_students_t_test():
    na, nb = len(A), len(B)
    ma, mb = np.mean(A), np.mean(B)
    pooled = ((na - 1) * np.var(A, ddof=1) + (nb - 1) * np.var(B, ddof=1)) / (na + nb - 2)
    t = (ma - mb) / math.sqrt(pooled * (1 / na + 1 / nb))
    p = 2 * sps.t.sf(abs(t), na + nb - 2)
    res = stats.two_sample(A, B)
    assert res.p == pytest.approx(p, rel=1e-10) and res.n == (5, 6) and res.method == "t"
    assert stats.two_sample(A + [float("nan")], B).p == pytest.approx(p, rel=1e-10)  # NaN left out
    assert stats.significant(res) and str(res) == f"{p:.3g}"


def test_one_sample_against_a_mean():
    mu = 0.8
    t = (np.mean(A) - mu) / (np.std(A, ddof=1) / math.sqrt(len(A)))
    assert stats.one_sample(A, mu).p == pytest.approx(2 * sps.t.sf(abs(t), len(A) - 1), rel=1e-10)


def test_paired_over_shared_keys_only():
    a = {("0", 0, "c1"): 0.9, ("0", 0, "c2"): 0.7, ("0", 1, "c1"): 0.85, ("0", 1, "c2"): 0.72, ("x", 9, "z"): 0.1}
    b = {("0", 0, "c1"): 0.8, ("0", 0, "c2"): 0.66, ("0", 1, "c1"): 0.8, ("0", 1, "c2"): 0.6}
    d = np.array([0.1, 0.04, 0.05, 0.12])
    t = d.mean() / (d.std(ddof=1) / 2)
    res = stats.paired(a, b)
    assert res.n == (4,) and res.p == pytest.approx(2 * sps.t.sf(abs(t), 3), rel=1e-10)


def test_case_paired_averages_each_case_over_trials_first():
    """Unit: test case, n = 4; the trials' shifts differ per arm, so trial averaging matters."""
    a = trials_of(CASE_A, 3, (0.0, 0.03, -0.06))
    b = trials_of(CASE_B, 3, (0.02, 0.0, 0.01))
    ma = np.array([np.mean([a[(t, c)] for t in range(3)]) for c in CASE_A])
    mb = np.array([np.mean([b[(t, c)] for t in range(3)]) for c in CASE_A])
    res = stats.case_paired(a, b)
    assert res.n == (4,) and res.method == "t"
    assert res.p == pytest.approx(sps.ttest_rel(ma, mb).pvalue, rel=1e-10)


def test_identical_copies_of_a_trial_change_no_case_level_p_or_ci():
    """10 identical copies of one trial carry no information beyond it: the case-paired p (unit: case,
    n = 4) and the cluster-bootstrap CI must equal those of the single trial. The (trial, case) pairs
    taken as units (n = 40) would give a p five orders of magnitude smaller."""
    one_a, one_b = trials_of(CASE_A, 1), trials_of(CASE_B, 1)
    ten_a, ten_b = trials_of(CASE_A, 10), trials_of(CASE_B, 10)
    p1, p10 = stats.case_paired(one_a, one_b), stats.case_paired(ten_a, ten_b)
    assert p10.p == pytest.approx(p1.p, rel=1e-12) and p1.n == p10.n == (4,)  # equal up to rounding of the means
    lo1, hi1 = stats.cluster_bootstrap_diff_ci(one_a, one_b, seed=5)
    lo10, hi10 = stats.cluster_bootstrap_diff_ci(ten_a, ten_b, seed=5)
    assert (lo10, hi10) == pytest.approx((lo1, hi1), abs=1e-12)
    assert lo1 < hi1  # a real interval, not a degenerate one
    pooled = stats.paired(ten_a, ten_b)  # the pseudo-replicated test, for contrast
    assert pooled.n == (40,) and pooled.p < p1.p * 1e-4


def test_one_trial_bootstrap_is_the_seeded_case_bootstrap():
    """Unit: test case, n = 4 (one trial): the two-way bootstrap reduces to resampling cases."""
    a, b = trials_of(CASE_A, 1), trials_of(CASE_B, 1)
    lo, hi = stats.cluster_bootstrap_diff_ci(a, b, resamples=2000, seed=3)
    d = np.array([CASE_A[c] - CASE_B[c] for c in sorted(CASE_A)])
    case_rng = np.random.default_rng(np.random.SeedSequence(3).spawn(2)[0])
    ref = np.percentile(d[case_rng.integers(0, 4, (2000, 4))].mean(1), [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(ref), abs=1e-12)
    assert lo < d.mean() < hi


def test_bootstrap_resamples_trials_too():
    """The difference is constant over cases within a trial but 0.1 in one trial and 0.3 in the other
    (n = 2 trials, 4 cases): a case-only bootstrap would give a zero-width interval; the two-way
    bootstrap spans the trials' spread."""
    base = trials_of(CASE_B, 2)
    arm = {(t, c): v + (0.1, 0.3)[t] for (t, c), v in base.items()}
    lo, hi = stats.cluster_bootstrap_diff_ci(arm, base)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.3)
    assert math.isnan(stats.cluster_bootstrap_diff_ci({(0, "c0"): 0.5}, {(0, "c0"): 0.4})[0])  # one case


def test_arms_without_variance_get_exact_tests():
    """Constant but different arms (0.000 ± 0.000 vs 0.300 ± 0.000 over 3 + 3 trials): the exact
    permutation test, p = 2 / C(6, 3) = 0.1 (the two extreme splits); equal constants: p = 1."""
    res = stats.two_sample([0.0] * 3, [0.3] * 3)
    assert res.method == "permutation" and res.p == pytest.approx(2 / math.comb(6, 3)) and res.exact
    assert str(res) == f"0.1 {stats.EXACT_MARK}"
    assert stats.two_sample([0.5, 0.5], [0.5, 0.5]).p == 1.0
    # unequal sizes: scipy's two-sided p doubles the smaller one-sided p, 2 * 1 / C(9, 4)
    assert stats.two_sample([0.0] * 4, [0.3] * 5).p == pytest.approx(2 / math.comb(9, 4))
    # paired with every difference equal (n = 4 pairs): the sign test, p = 2 * 0.5^4
    res = stats.paired({i: 0.3 + i for i in range(4)}, {i: 0.0 + i for i in range(4)})
    assert res.method == "sign" and res.p == pytest.approx(0.125)
    assert stats.paired({1: 0.5, 2: 0.6}, {1: 0.5, 2: 0.6}).p == 1.0  # no difference at all
    assert stats.one_sample([0.7] * 5, 0.5).p == pytest.approx(2 * 0.5 ** 5)  # constant sample, other mean
    assert stats.one_sample([0.5] * 5, 0.5).p == 1.0


def test_fewer_than_two_units_are_na():
    for res in (stats.two_sample([0.5], B), stats.one_sample([0.7], 0.5), stats.paired({1: 0.5}, {1: 0.4}),
                stats.case_paired({(0, "c0"): 0.5, (1, "c0"): 0.6}, {(0, "c0"): 0.4, (1, "c0"): 0.3})):
        assert math.isnan(res.p) and str(res) == "n/a (n < 2)" and not stats.significant(res)
    assert str(stats.one_sample(A, float("nan"))) == "n/a (no reference value)"
    s = stats.summarize([0.7])
    assert (s.mean, s.sd, s.n) == (0.7, 0.0, 1) and str(stats.summarize([])) == "n/a"
    assert str(stats.summarize([0.8, 0.82, 0.81])) == "0.810 ± 0.010"


def test_kaplan_meier_median_counts_censored_trials():
    """Unit: trial. Kaplan–Meier S(t) = prod(1 - events / at risk) by hand."""
    # 20 and 30 s reached, two trials censored at 80 s: S(20) = 3/4, S(30) = 3/4 * 2/3 = 1/2 -> 30
    assert stats.km_median([20, 30, 80, 80], [True, True, False, False]) == 30
    # a trial censored early leaves the risk set: S(20) = 2/3, S(30) = 1/3 -> 30
    assert stats.km_median([10, 20, 30, 40], [False, True, True, True]) == 30
    # two of five reach it (at 10 and 12 s): S stays at 3/5 > 1/2, the median is beyond the budget
    # (the mean over the trials that reached it would claim 11 s)
    assert stats.km_median([10, 12, 50, 50, 50], [True, True, False, False, False]) == math.inf
    assert stats.km_median([50, 50], [False, False]) == math.inf
    assert math.isnan(stats.km_median([], []))
