"""The classification design's section of report.md (the paper's Fig 3), from `scores.csv` only.

Per (arm, trial) and sub-type: the one-vs-rest AUC of that trial's classifier on the test cases
(scikit-learn, through `classification.evaluate.class_metrics`). A cell is mean ± sd over trials;
`*` marks P < 0.05 of Student's two-sample t-test of an arm's trial AUCs against the baseline's
(the paper's test); the paired t-test over trials (the arms of a trial share the few-shot cases and
the seed) is reported beside it. The ROC figure shows each arm's first trial, in the layout of
`suprem_evaluate --classification` (one panel per sub-type, DeLong 95 % CI in the legend).
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from . import stats

MARK = "*"


def _table(header: Sequence[str], body: Sequence[Sequence]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in body]


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def trial_metrics(rows: Sequence[Dict]) -> Dict[str, Dict[int, Dict[str, Dict]]]:
    """{arm: {trial: {sub-type: class_metrics}}} from score rows (arm, trial, case, class, truth, score)."""
    from ..classification.evaluate import class_metrics

    acc: Dict[tuple, Dict[str, List]] = defaultdict(lambda: {"y": [], "s": []})
    for r in rows:
        a = acc[(r["arm"], int(r["trial"]), r["class"])]
        a["y"].append(bool(int(float(r["truth"]))))
        a["s"].append(float(r["score"]))
    out: Dict[str, Dict[int, Dict[str, Dict]]] = defaultdict(dict)
    for (arm, trial, k), a in acc.items():
        out[arm].setdefault(trial, {})[k] = class_metrics(np.array(a["y"]), np.array(a["s"]))
    return out


def classification_section(name: str, paper: str, rows: Sequence[Dict], arms: List[str], base: str,
                           out: Path) -> List[str]:
    """Markdown lines: the AUC table, the tests, the operating points and the ROC figure."""
    from ..classification.evaluate import roc_figure

    metrics = trial_metrics(rows)
    classes = list(dict.fromkeys(r["class"] for r in rows))
    units = classes + [None]

    def aucs(arm: str, k) -> Dict[int, float]:
        per = metrics.get(arm, {})
        if k is not None:
            return {t: m[k]["auc"] for t, m in sorted(per.items()) if k in m}
        return {t: float(np.nanmean([v["auc"] for v in m.values()])) if any(not math.isnan(v["auc"])
                for v in m.values()) else math.nan for t, m in sorted(per.items())}

    body, tests = [], []
    for k in units:
        label = k if k is not None else "**mean over sub-types**"
        cells = []
        b = aucs(base, k)
        for a in arms:
            v = aucs(a, k)
            s = stats.summarize(list(v.values()))
            if a == base:
                cells.append(str(s))
                continue
            p2 = stats.two_sample(list(v.values()), list(b.values()))
            pp, n_pairs = stats.paired(v, b)
            cells.append(f"{s}{' ' + MARK if stats.significant(p2) else ''}")
            tests.append([label, f"{a} − {base}", f"{s.mean - stats.summarize(list(b.values())).mean:+.3f}",
                          _p(p2), f"{s.n} + {stats.summarize(list(b.values())).n}", _p(pp), n_pairs])
        body.append([label] + cells)
    lines = ["AUC (one-vs-rest, per sub-type), mean ± sd over trials:", ""]
    lines += _table(["sub-type"] + arms, body)
    lines += ["", f"{MARK}: P < 0.05, independent two-sample t-test (Student's) of the trials' AUCs against "
              f"{base}. A sub-type without a positive or a negative test case has no AUC (n/a).", ""]
    lines += _table(["sub-type", "arms", "Δ mean AUC", "p (two-sample)", "n trials", "p (paired over trials)",
                     "n pairs"], tests)
    ops = []
    for k in classes:
        for a in arms:
            ms = [m[k] for m in metrics.get(a, {}).values() if k in m and "youden" in m[k]]
            if not ms:
                ops.append([k, a, "n/a", "n/a"])
                continue
            y = [(m["youden"]["sensitivity"], m["youden"]["specificity"]) for m in ms]
            s95 = [(m["spec95"]["sensitivity"], m["spec95"]["specificity"]) for m in ms]
            ops.append([k, a, f"{np.mean([v[0] for v in y]):.2f} / {np.mean([v[1] for v in y]):.2f}",
                        f"{np.mean([v[0] for v in s95]):.2f} / {np.mean([v[1] for v in s95]):.2f}"])
    lines += ["", "Sensitivity / specificity, mean over trials (the paper reports PDAC's: 86.1 % / 95.4 %):", ""]
    lines += _table(["sub-type", "arm", "at the Youden point", "at ≥ 95 % specificity"], ops)
    first = {a: min(metrics[a]) for a in arms if metrics.get(a)}
    fig = out / f"{name}.png"
    roc_figure({a: {"classes": classes, "per_class": metrics[a][t]} for a, t in first.items()}, fig,
               f"{paper}: ROC of each arm's first trial")
    n_cases = len({r["case"] for r in rows})
    lines += ["", f"ROC curves: each arm's first trial (trial {min(first.values()) if first else 0}) on the {n_cases} "
              "test cases; the table above covers every trial.", "", f"![{paper}]({fig.name})"]
    return lines
