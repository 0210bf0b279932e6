"""Compare evaluation results of two arms (e.g. fine-tuned vs from scratch) case by case."""
from __future__ import annotations

import math
from typing import Dict, List

import numpy as np
from scipy import stats


def paired_comparison(a: Dict, b: Dict, metric: str = "dsc") -> Dict[str, Dict[str, float]]:
    """Per class: mean of arm a and b over the cases both scored (unit: test case), the mean
    difference a - b, and a two-sided paired t-test p-value over those cases ('test': 't'). Where the
    differences have no variance the t-test is undefined: p of the exact sign test instead
    ('test': 'sign'; p = 2^(1-n) when every case differs the same way, 1 when none differs). NaN
    ('test': '') with fewer than two pairs."""
    def table(res: Dict) -> Dict[tuple, float]:
        return {(r["case"], r["class"]): r[metric] for r in res["per_case"]}

    ta, tb = table(a), table(b)
    out: Dict[str, Dict[str, float]] = {}
    for cls in a["summary"]:
        pairs = [(ta[k], tb[k]) for k in ta if k[1] == cls and k in tb
                 and not math.isnan(ta[k]) and not math.isnan(tb[k])]
        x = np.array([p[0] for p in pairs]) if pairs else np.zeros(0)
        y = np.array([p[1] for p in pairs]) if pairs else np.zeros(0)
        p, test = float("nan"), ""
        d = x - y
        if len(pairs) >= 2 and np.ptp(d) > 1e-12:
            p, test = float(stats.ttest_rel(x, y).pvalue), "t"
        elif len(pairs) >= 2:  # constant differences: t undefined, the sign test is exact with ties
            nonzero = d[np.abs(d) > 1e-12]
            p = float(stats.binomtest(int((nonzero > 0).sum()), nonzero.size, 0.5).pvalue) if nonzero.size else 1.0
            test = "sign"
        out[cls] = {"mean_a": float(x.mean()) if x.size else float("nan"),
                    "mean_b": float(y.mean()) if y.size else float("nan"),
                    "diff": float(d.mean()) if x.size else float("nan"), "p": p, "n": len(pairs), "test": test}
    return out


def mean_sd_over_trials(values: List[float]) -> str:
    """'0.812 ± 0.031' over trials (sample sd), 'n/a' without values."""
    v = np.array([x for x in values if not math.isnan(x)], float)
    if v.size == 0:
        return "n/a"
    sd = v.std(ddof=1) if v.size > 1 else 0.0
    return f"{v.mean():.3f} ± {sd:.3f}"
