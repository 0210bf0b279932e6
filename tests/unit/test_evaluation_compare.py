"""The demo's paired comparison (evaluation.compare): unit test case, n = cases both arms scored;
differences without variance get the exact sign test instead of an undefined t-test."""
from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from suprem_nnunet.evaluation.compare import paired_comparison


def res(vals, cls="iliopsoas_left"):
    return {"summary": {cls: {}}, "per_case": [{"case": f"c{i}", "class": cls, "dsc": v} for i, v in enumerate(vals)]}


def test_paired_t_test_over_cases():
    """n = 4 cases with varying differences: scipy's paired t-test."""
    a, b = [0.9, 0.8, 0.85, 0.95], [0.7, 0.65, 0.7, 0.8]
    cmp = paired_comparison(res(a), res(b))["iliopsoas_left"]
    assert cmp["test"] == "t" and cmp["n"] == 4 and cmp["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)


def test_constant_differences_get_the_sign_test():
    """A novel class at 0.3 in every case for one arm, 0 for the other (n = 5 cases): p = 2 * 0.5^5,
    not NaN; equal arms: p = 1; a single case: NaN (n < 2)."""
    cmp = paired_comparison(res([0.3] * 5), res([0.0] * 5))["iliopsoas_left"]
    assert cmp["test"] == "sign" and cmp["p"] == pytest.approx(2 * 0.5 ** 5) and cmp["diff"] == pytest.approx(0.3)
    assert paired_comparison(res([0.4] * 3), res([0.4] * 3))["iliopsoas_left"]["p"] == 1.0
    one = paired_comparison(res([0.4]), res([0.1]))["iliopsoas_left"]
    assert math.isnan(one["p"]) and one["test"] == "" and one["n"] == 1
