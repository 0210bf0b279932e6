"""Statistics of the experiment reports (scipy.stats), for a design of trials × test cases.

Every trial of a protocol predicts the *same* test cases, so (trial, case) values are not
independent: a test never takes them as its units. The units are

- **trials** (`two_sample`, `paired` of trial means): Student's two-sample t-test, the paper's
  test, n = trials per arm; the paired t-test over trials (the arms of a trial share its seed and
  few-shot cases), n = trials both arms ran;
- **test cases** (`case_paired`): each case's value is averaged over the trials of its arm first,
  then a paired t-test over cases, n = cases both arms scored. Copies of a trial leave it unchanged.

A t-test needs variance. Where the units have none (every difference equal, or both arms
constant), the answer is an exact test that is defined with ties: the sign test
(`scipy.stats.binomtest` on the signs of the differences: p = 2^(1-n) when all n differ the same
way) for paired and one-sample tests, the permutation test of the difference in means
(`scipy.stats.permutation_test`, exact where it can enumerate) for two samples. Equal constants give
p = 1. A `Test` records which method gave its p. Fewer than two units: p is NaN, shown as
"n/a (n < 2)".

The confidence interval of a difference (`cluster_bootstrap_diff_ci`) is the two-way (pigeonhole)
bootstrap of a crossed trials × cases design (Owen 2007, "The pigeonhole bootstrap"): each replicate
redraws test cases and trials, with replacement, as clusters. NaN values are left out everywhere.
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Hashable, Mapping, Sequence, Tuple

import numpy as np
from scipy import stats

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10000
#: enumerate a permutation test exactly up to this many distinct permutations, else sample them
EXACT_PERMUTATIONS = 200_000  # 10 + 10 trials (the paper's count): C(20, 10) = 184,756
PERMUTATION_RESAMPLES = 99_999
#: marks a p that comes from an exact test because the units have no variance
EXACT_MARK = "‡"
_TOL = 1e-12


def _clean(values: Sequence[float]) -> np.ndarray:
    v = np.asarray([float(x) for x in values], float)
    return v[~np.isnan(v)]


@dataclass(frozen=True)
class Summary:
    mean: float
    sd: float  # sample sd (ddof=1); 0 for a single value
    n: int

    def __str__(self) -> str:
        return "n/a" if self.n == 0 else f"{self.mean:.3f} ± {self.sd:.3f}"


def summarize(values: Sequence[float]) -> Summary:
    v = _clean(values)
    if v.size == 0:
        return Summary(float("nan"), float("nan"), 0)
    return Summary(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


@dataclass(frozen=True)
class Test:
    """One test's outcome: two-sided `p` (NaN when undefined), the number of units `n` (one entry
    per arm for a two-sample test, else one), the `method` that gave p ('t', 'sign',
    'permutation', or '' when undefined) and, when undefined, the `reason`."""

    p: float
    n: Tuple[int, ...]
    method: str
    reason: str = ""

    @property
    def exact(self) -> bool:
        """p comes from an exact test because the units have no variance."""
        return self.method in ("sign", "permutation")

    @property
    def n_text(self) -> str:
        return " + ".join(str(k) for k in self.n)

    def __str__(self) -> str:
        if math.isnan(self.p):
            return f"n/a ({self.reason})"
        return f"{self.p:.3g}" + (f" {EXACT_MARK}" if self.exact else "")


def _too_few(n: Tuple[int, ...]) -> Test:
    return Test(float("nan"), n, "", "n < 2")


def _sign_test(d: np.ndarray) -> Test:
    """Exact two-sided sign test of the differences `d` (zero differences are ties: left out);
    p = 1 when every difference is zero."""
    nonzero = d[np.abs(d) > _TOL]
    if nonzero.size == 0:
        return Test(1.0, (int(d.size),), "sign")
    return Test(float(stats.binomtest(int((nonzero > 0).sum()), int(nonzero.size), 0.5).pvalue), (int(d.size),),
                "sign")


def _diff_test(d: np.ndarray) -> Test:
    """Two-sided test that the differences `d` have mean 0: the one-sample t-test, or the exact sign
    test when `d` has no variance."""
    if d.size < 2:
        return _too_few((int(d.size),))
    if np.ptp(d) < _TOL:
        return _sign_test(d)
    return Test(float(stats.ttest_1samp(d, 0.0).pvalue), (int(d.size),), "t")


def two_sample(a: Sequence[float], b: Sequence[float], seed: int = 0) -> Test:
    """Student's independent two-sample t-test (equal variances: scipy's default), two-sided. When
    both samples are constant: the permutation test of the difference in means (exact up to
    EXACT_PERMUTATIONS distinct splits, else PERMUTATION_RESAMPLES seeded draws)."""
    x, y = _clean(a), _clean(b)
    n = (int(x.size), int(y.size))
    if min(n) < 2:
        return _too_few(n)
    if np.ptp(x) < _TOL and np.ptp(y) < _TOL:
        if abs(x[0] - y[0]) < _TOL:
            return Test(1.0, n, "permutation")
        exact = math.comb(x.size + y.size, x.size) <= EXACT_PERMUTATIONS
        res = stats.permutation_test((x, y), lambda u, v, axis: u.mean(axis) - v.mean(axis),
                                     permutation_type="independent", vectorized=True,
                                     n_resamples=np.inf if exact else PERMUTATION_RESAMPLES,
                                     rng=np.random.default_rng(seed))
        return Test(float(res.pvalue), n, "permutation")
    with warnings.catch_warnings():  # one constant sample (e.g. AUC 1.0 in every trial): its variance is exactly 0
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return Test(float(stats.ttest_ind(x, y).pvalue), n, "t")


def one_sample(a: Sequence[float], popmean: float) -> Test:
    """One-sample t-test of `a` against the constant `popmean`, two-sided (the sign test of
    a - popmean when `a` is constant)."""
    x = _clean(a)
    if math.isnan(popmean):
        return Test(float("nan"), (int(x.size),), "", "no reference value")
    return _diff_test(x - popmean)


def _pairs(a: Mapping, b: Mapping) -> Tuple[np.ndarray, np.ndarray]:
    keys = [k for k in a if k in b and not math.isnan(a[k]) and not math.isnan(b[k])]
    return np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)


def paired(a: Mapping, b: Mapping) -> Test:
    """Paired t-test of a[k] - b[k] over the keys both dicts hold (each key one unit, e.g. a trial
    or a test case), two-sided; n = pairs."""
    x, y = _pairs(a, b)
    return _diff_test(x - y)


def case_means(values: Mapping[Tuple[int, Hashable], float]) -> Dict[Hashable, float]:
    """{case: mean over trials} of {(trial, case): value} (NaN left out; a case with no value is absent)."""
    acc: Dict[Hashable, list] = defaultdict(list)
    for (_, case), v in values.items():
        if not math.isnan(v):
            acc[case].append(v)
    return {c: float(np.mean(v)) for c, v in acc.items()}


def case_paired(a: Mapping[Tuple[int, Hashable], float], b: Mapping[Tuple[int, Hashable], float]) -> Test:
    """Paired t-test over test cases of two arms' {(trial, case): value}: each case averaged over its
    arm's trials first, then paired by case; n = cases both arms scored."""
    return paired(case_means(a), case_means(b))


def _grid(values: Mapping[Tuple[int, Hashable], float], cases: Sequence) -> Tuple[list, np.ndarray]:
    trials = sorted({t for t, _ in values})
    col = {c: j for j, c in enumerate(cases)}
    m = np.full((len(trials), len(cases)), np.nan)
    row = {t: i for i, t in enumerate(trials)}
    for (t, c), v in values.items():
        if c in col:
            m[row[t], col[c]] = v
    return trials, m


def _counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """(resamples, n) counts of each index in `resamples` draws of n indices with replacement."""
    idx = rng.integers(0, n, (resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(idx.ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)


def cluster_bootstrap_diff_ci(a: Mapping[Tuple[int, Hashable], float], b: Mapping[Tuple[int, Hashable], float],
                              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Tuple[float, float]:
    """Percentile 95 % CI of mean(a) - mean(b) for two arms' {(trial, case): value}, by the two-way
    cluster bootstrap: each replicate draws the test cases both arms scored with replacement (one
    draw for both arms: they pair by case) and the trials with replacement (one draw for both arms
    when they ran the same trials: they pair by trial; else one per arm), and takes each arm's mean
    over the drawn (trial, case) cells. Cases and trials come from separate seeded streams
    (numpy default_rng), so copies of a trial change no case draw and leave the CI unchanged.
    (nan, nan) with fewer than two cases."""
    a = {k: v for k, v in a.items() if not math.isnan(v)}
    b = {k: v for k, v in b.items() if not math.isnan(v)}
    cases = sorted(set(c for _, c in a) & set(c for _, c in b), key=str)
    if len(cases) < 2:
        return float("nan"), float("nan")
    ta, ga = _grid(a, cases)
    tb, gb = _grid(b, cases)
    case_rng, trial_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    wc = _counts(case_rng, len(cases), resamples)
    wa = _counts(trial_rng, len(ta), resamples)
    wb = wa if ta == tb else _counts(trial_rng, len(tb), resamples)

    def means(w: np.ndarray, g: np.ndarray) -> np.ndarray:
        have = ~np.isnan(g)
        total = ((w @ np.where(have, g, 0.0)) * wc).sum(1)
        count = ((w @ have.astype(float)) * wc).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count

    diffs = means(wa, ga) - means(wb, gb)
    diffs = diffs[~np.isnan(diffs)]  # a replicate that drew no cell of an arm
    if diffs.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def km_median(times: Sequence[float], reached: Sequence[bool]) -> float:
    """Kaplan-Meier median of times to an event with right censoring (`reached` False: the event was
    not seen by `times`): the first time at which the estimated share still waiting is <= 1/2
    (scipy.stats.ecdf on CensoredData); inf when that share never falls to 1/2 (fewer than half
    reached it), NaN without times."""
    t = np.asarray(times, float)
    r = np.asarray(reached, bool)
    if t.size == 0:
        return float("nan")
    sf = stats.ecdf(stats.CensoredData(uncensored=t[r], right=t[~r])).sf
    hit = np.flatnonzero(sf.probabilities <= 0.5 + _TOL)
    return float(sf.quantiles[hit[0]]) if hit.size else float("inf")


def significant(test: Test) -> bool:
    return not math.isnan(test.p) and test.p < ALPHA
