"""Statistics of the paper (scipy): independent two-sample and one-sample t-tests, plus a paired
t-test and a bootstrap 95 % confidence interval of the difference (trials share test cases).

All functions take plain value lists, leave NaN out, and return NaN where a test is undefined
(fewer than two values, or no variance)."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy import stats

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10000


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


def _undefined(*samples: np.ndarray) -> bool:
    return any(s.size < 2 for s in samples) or all(np.ptp(s) < 1e-12 for s in samples)


def two_sample(a: Sequence[float], b: Sequence[float]) -> float:
    """p of the independent two-sample t-test (Student's, equal variances: scipy's default), two-sided."""
    x, y = _clean(a), _clean(b)
    if _undefined(x, y):
        return float("nan")
    with warnings.catch_warnings():  # one constant sample (e.g. AUC 1.0 in every trial): its variance is exactly 0
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return float(stats.ttest_ind(x, y).pvalue)


def one_sample(a: Sequence[float], popmean: float) -> float:
    """p of the one-sample t-test of `a` against `popmean`, two-sided."""
    x = _clean(a)
    if x.size < 2 or np.ptp(x) < 1e-12 or math.isnan(popmean):
        return float("nan")
    return float(stats.ttest_1samp(x, popmean).pvalue)


def _pairs(a: Dict, b: Dict) -> Tuple[np.ndarray, np.ndarray]:
    keys = [k for k in a if k in b and not math.isnan(a[k]) and not math.isnan(b[k])]
    return np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)


def paired(a: Dict, b: Dict) -> Tuple[float, int]:
    """(p of the paired t-test, number of pairs) over the keys both dicts hold (e.g. (trial, case))."""
    x, y = _pairs(a, b)
    if x.size < 2 or np.ptp(x - y) < 1e-12:
        return float("nan"), int(x.size)
    return float(stats.ttest_rel(x, y).pvalue), int(x.size)


def bootstrap_diff_ci(a: Sequence[float], b: Sequence[float], paired_samples: bool = False,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Tuple[float, float]:
    """Percentile bootstrap 95 % CI of mean(a) - mean(b): pairs resampled together when
    `paired_samples` (a[i] and b[i] belong together), else each sample on its own. Seeded."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    if paired_samples:
        if x.shape != y.shape:
            raise ValueError("paired bootstrap needs samples of equal length")
        keep = ~(np.isnan(x) | np.isnan(y))
        d = x[keep] - y[keep]
        if d.size < 2:
            return float("nan"), float("nan")
        idx = rng.integers(0, d.size, (resamples, d.size))
        diffs = d[idx].mean(axis=1)
    else:
        x, y = _clean(x), _clean(y)
        if x.size < 2 or y.size < 2:
            return float("nan"), float("nan")
        diffs = (x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
                 - y[rng.integers(0, y.size, (resamples, y.size))].mean(axis=1))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def significant(p: float) -> bool:
    return not math.isnan(p) and p < ALPHA
