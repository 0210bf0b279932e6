"""The classification design's section of report.md (the paper's Fig 3), from `scores.csv` only.

Per (arm, trial) and sub-type: the one-vs-rest AUC of that trial's classifier on the test cases
(scikit-learn, through `classification.evaluate.class_metrics`). An AUC is a property of a trial's
classifier on the whole test set, not of a case, so every test's unit is the trial. A cell is
mean ± sd over trials; `*` marks P < 0.05 of Student's two-sample t-test of an arm's trial AUCs
against the baseline's (the paper's test); the paired t-test over trials (the arms of a trial share
the few-shot cases and the seed) is reported beside it. Constant arms get the exact tests of
`stats` (marked), fewer than two trials "n/a (n < 2)". The ROC figure shows each arm's first trial, in the layout of
`suprem_evaluate --classification` (one panel per sub-type, DeLong 95 % CI in the legend).
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from . import stats
from ..classification.evaluate import class_metrics, roc_figure

MARK = "*"


def _table(header: Sequence[str], body: Sequence[Sequence]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in body]




def trial_metrics(rows: Sequence[Dict]) -> Dict[str, Dict[int, Dict[str, Dict]]]:
    """{arm: {trial: {sub-type: class_metrics}}} from score rows (arm, trial, case, class, truth, score)."""
    acc: Dict[tuple, Dict[str, List]] = defaultdict(lambda: {"y": [], "s": []})
    for r in rows:
        a = acc[(r["arm"], int(r["trial"]), r["class"])]
        a["y"].append(bool(int(float(r["truth"]))))
        a["s"].append(float(r["score"]))
    out: Dict[str, Dict[int, Dict[str, Dict]]] = defaultdict(dict)
    for (arm, trial, k), a in acc.items():
        out[arm].setdefault(trial, {})[k] = class_metrics(np.array(a["y"]), np.array(a["s"]))
    return out


#: suffix of the arms scored inside the ground-truth label maps (an upper bound: experiments/classification_run.py)
ORACLE = " (oracle ROI)"


def classification_section(name: str, paper: str, rows: Sequence[Dict], arms: List[str], base: str,
                           out: Path) -> List[str]:
    """Markdown lines: the AUC table, the tests, the operating points and the ROC figure."""
    metrics = trial_metrics(rows)
    classes = list(dict.fromkeys(r["class"] for r in rows))
    units = classes + [None]

    def aucs(arm: str, k) -> Dict[int, float]:
        per = metrics.get(arm, {})
        if k is not None:
            return {t: m[k]["auc"] for t, m in sorted(per.items()) if k in m}
        return {t: float(np.nanmean([v["auc"] for v in m.values()])) if any(not math.isnan(v["auc"])
                for v in m.values()) else math.nan for t, m in sorted(per.items())}

    def baseline_of(arm: str) -> str:
        """An arm scored inside the oracle ROI is compared with the baseline scored there too."""
        return base + ORACLE if arm.endswith(ORACLE) and base + ORACLE in arms else base

    body, tests, results = [], [], []
    for k in units:
        label = k if k is not None else "**mean over sub-types**"
        cells = []
        for a in arms:
            v = aucs(a, k)
            s = stats.summarize(list(v.values()))
            if a in (base, base + ORACLE):
                cells.append(str(s))
                continue
            b = aucs(baseline_of(a), k)
            p2 = stats.two_sample(list(v.values()), list(b.values()))
            pp = stats.paired(v, b)
            results += [p2, pp]
            cells.append(f"{s}{' ' + MARK if stats.significant(p2) else ''}")
            tests.append([label, f"{a} − {baseline_of(a)}", f"{s.mean - stats.summarize(list(b.values())).mean:+.3f}",
                          str(p2), p2.n_text, str(pp), pp.n_text])
        body.append([label] + cells)
    lines = ["AUC (one-vs-rest, per sub-type), mean ± sd over trials:", ""]
    lines += _table(["sub-type"] + arms, body)
    n2 = list(dict.fromkeys(t.n_text for t in results[::2]))
    npair = list(dict.fromkeys(t.n_text for t in results[1::2]))
    lines += ["", f"{MARK}: P < 0.05, two-sided Student's two-sample t-test of the trials' AUCs against {base} "
              f"scored inside the same ROI ({base} for the predicted ROI, {base}{ORACLE} for the ground-truth one) "
              f"(unit: trial, n = {', '.join(n2) or '0'} trials). A sub-type without a positive or a negative test "
              "case has no AUC (n/a).", ""]
    lines += _table(["sub-type", "arms", "Δ mean AUC", "p (two-sample, trials)", "n trials", "p (paired, trials)",
                     "n trial pairs"], tests)
    lines += ["", f"Two-sample: as for {MARK}. Paired: two-sided paired t-test of the trials' AUCs (unit: trial; "
              f"the arms of a trial share its seed and few-shot cases), n = {', '.join(npair) or '0'} trial pairs. "
              "An AUC belongs to a trial's classifier on the whole test set, so there is no test over cases."]
    if any(t.exact for t in results):
        lines.append(f"{stats.EXACT_MARK}: the trials have no variance (every difference equal, or both arms "
                     "constant), so a t-test is undefined: p of the exact sign test (paired) or the exact "
                     "permutation test of the difference in means (two-sample) instead; equal constants give p = 1.")
    if any(math.isnan(t.p) for t in results):
        lines.append("n/a (n < 2): fewer than two trials, no test.")
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
