"""report.md and PNG figures of one protocol's results folder, computed from its rows only
(results.csv, curves.csv, runs.csv) and the protocol it recorded; `suprem_experiment report DIR`
regenerates them from old results.

Design: every trial of an arm predicts the same test cases, so a (trial, case) value is never a
unit of its own. A per-class cell is the mean ± sd over trials of that trial's mean DSC over test
cases; an overall cell averages the per-class means of a trial first (as evaluation does). Each
comparison of an arm with the baseline reports three tests, each with its unit and n: Student's
two-sample t-test over trials (the `*` of the table: the paper's test), the paired t-test over trials
(the arms of a trial share its seed and few-shot cases), and the paired t-test over test cases with
each case averaged over trials first; with one trial the `*` is the test over cases. The 95 % CI of a
difference is a two-way cluster bootstrap over cases and trials (stats.cluster_bootstrap_diff_ci).
Every table's caption names its test, unit and n.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..dataset.raw import atomic_write_bytes
from ..labels.table import canonical
from . import stats
from .figures import curve_plot, sweep_plot
from .plateau import plateau_section
from .protocol import SETTING_NAMES, Protocol, protocol_from_dict
from ..labels import BY_NAME, TOTALSEG_V2, totalseg_group
from ..evaluation.figures import score_bars
from .report_classification import classification_section
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)
MARK = "*"
#: label-table group -> TotalSegmentator's target-task group (Table 4)
TOTALSEG_GROUPS = {"muscle": "muscles", "cardiac": "cardiac", "bone": "vertebrae", "organ": "organs",
                   "vessel": "organs", "tumor": "organs", "other": "organs"}


# ---------------------------------------------------------------------------- reading rows
def _num(v: str) -> float:
    return float(v) if v not in ("", None) else float("nan")


def read_rows(path: Path) -> List[Dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["trial"] = int(r["trial"])
        for k in ("dsc", "nsd", "epoch", "seconds", "val_dsc_ema", "val_dsc", "train_seconds", "pretrain_cases",
                  "pretrain_seconds"):
            if k in r:
                r[k] = _num(r[k])
    return rows


def class_group(name: str) -> str:
    """Table 4's group of a class: the label table's group in TotalSegmentator's naming (muscles,
    cardiac, vertebrae, organs); other TotalSegmentator names by TotalSegmentator's own grouping."""
    c = canonical(name)
    if c in BY_NAME:
        return TOTALSEG_GROUPS.get(BY_NAME[c].group, "organs")
    ts = {n.lower(): n for n in TOTALSEG_V2}
    return totalseg_group(ts[c], 2) if c in ts else "organs"


class Rows:
    """Results rows of one protocol with the aggregations the tables need."""

    def __init__(self, rows: List[Dict], metric: str = "dsc", group_of=None):
        self.rows, self.metric = rows, metric
        self.group_of = group_of

    def unit(self, r: Dict) -> str:
        return self.group_of(r["class"]) if self.group_of else r["class"]

    def units(self) -> List[str]:
        seen: Dict[str, None] = {}
        for r in self.rows:
            seen.setdefault(self.unit(r), None)
        return list(seen)

    def _select(self, arm: str, setting: Optional[str]) -> List[Dict]:
        return [r for r in self.rows if r["arm"] == arm and (setting is None or r["setting"] == setting)]

    def trials(self, arm: str) -> List[int]:
        return sorted({r["trial"] for r in self.rows if r["arm"] == arm})

    def case_values(self, arm: str, setting: Optional[str], unit: Optional[str]) -> Dict[Tuple, float]:
        """{(trial, case): value}: the metric of `unit` (a class, or a group: mean over its
        classes), or over all classes when unit is None (mean over the case's classes)."""
        acc: Dict[Tuple, List[float]] = defaultdict(list)
        for r in self._select(arm, setting):
            if unit is None or self.unit(r) == unit:
                if not math.isnan(r[self.metric]):
                    acc[(r["trial"], r["case"])].append(r[self.metric])
        return {k: float(np.mean(v)) for k, v in acc.items()}

    def trial_values(self, arm: str, setting: Optional[str], unit: Optional[str]) -> Dict[int, float]:
        """{trial: value}: mean over test cases of each class, then over the classes of `unit` (or all)."""
        per: Dict[int, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))
        for r in self._select(arm, setting):
            if (unit is None or self.unit(r) == unit) and not math.isnan(r[self.metric]):
                per[r["trial"]][r["class"]].append(r[self.metric])
        return {t: float(np.mean([np.mean(v) for v in per[t].values()])) for t in sorted(per)}

    def trial_means(self, arm: str, setting: Optional[str], unit: Optional[str]) -> List[float]:
        """The values of `trial_values` in trial order."""
        return list(self.trial_values(arm, setting, unit).values())


# ---------------------------------------------------------------------------- tests and their captions
#: the tests of a comparison of two arms, by key: what each one's unit is
TESTS = {
    "two_sample": "two-sided Student's two-sample t-test over trials (unit: trial, each trial's mean DSC over "
                  "the test cases; the paper's test)",
    "paired_trials": "two-sided paired t-test over trials (unit: trial; the arms of a trial share its seed and "
                     "its few-shot cases, so they pair by trial)",
    "paired_cases": "two-sided paired t-test over test cases (unit: test case; each case's DSC, mean over the "
                    "row's classes, averaged over the trials of its arm first, then paired by case)",
}
UNIT_WORD = {"two_sample": "trials", "paired_trials": "trial pairs", "paired_cases": "test cases"}
TEST_COLUMNS = {"two_sample": "p (two-sample, trials)", "paired_trials": "p (paired, trials)",
                "paired_cases": "p (paired, cases)"}


def primary_test(n_trials: int) -> str:
    """The test behind a table's `*`: Student's two-sample t-test over trials (the paper's test; it
    ignores the pairing of the arms by trial, which makes it conservative when the paired trials
    correlate positively, as shared few-shot cases make them), or with a single trial, where no test
    over trials exists, the paired t-test over test cases."""
    return "two_sample" if n_trials >= 2 else "paired_cases"


def compare(rows: Rows, arm: str, base: str, setting: Optional[str], unit: Optional[str],
            base_setting: Optional[str] = None) -> Dict:
    """`arm` against `base` (at `base_setting`, default the same setting): summaries over trials,
    the difference of means, the tests of TESTS and the cluster-bootstrap CI of the difference."""
    bs = setting if base_setting is None else base_setting
    ta, tb = rows.trial_values(arm, setting, unit), rows.trial_values(base, bs, unit)
    ca, cb = rows.case_values(arm, setting, unit), rows.case_values(base, bs, unit)
    sa, sb = stats.summarize(list(ta.values())), stats.summarize(list(tb.values()))
    return {"a": sa, "b": sb, "diff": sa.mean - sb.mean,
            "two_sample": stats.two_sample(list(ta.values()), list(tb.values())),
            "paired_trials": stats.paired(ta, tb), "paired_cases": stats.case_paired(ca, cb),
            "ci": stats.cluster_bootstrap_diff_ci(ca, cb)}


def _n_phrase(tests: Sequence[stats.Test], what: str) -> str:
    """'n = 3 + 3 trials' when every row has the same n, else the distinct n and 'per row'."""
    ns = list(dict.fromkeys(t.n_text for t in tests))
    if not ns:
        return f"n = 0 {what}"
    return f"n = {ns[0]} {what}" if len(ns) == 1 else f"n = {', '.join(ns)} {what} (per row in the tests table)"


def _mark_caption(primary: str, base: str, tests: Sequence[stats.Test]) -> str:
    return f"{MARK}: P < 0.05, {TESTS[primary]} against {base}, {_n_phrase(tests, UNIT_WORD[primary])}."


def _test_notes(comparisons: Sequence[Dict], keys: Sequence[str]) -> List[str]:
    """Caption lines for the tests table: each test with its unit and n, the CI, and the conventions."""
    lines = [f"- {TEST_COLUMNS[key]}: {TESTS[key]}; {_n_phrase([c[key] for c in comparisons], UNIT_WORD[key])}."
             for key in keys]
    lines.append(f"- 95% CI of Δ: percentile interval of a two-way cluster bootstrap ({stats.BOOTSTRAP_RESAMPLES} "
                 "replicates, seed 0): each replicate redraws the test cases and the trials with replacement, as "
                 "clusters, the same draw for both arms, and takes each arm's mean over the drawn (trial, case) "
                 "cells; (trial, case) values are never resampled as independent rows.")
    if any(c[k].exact for c in comparisons for k in keys):
        lines.append(_EXACT_NOTE)
    if any(math.isnan(c[k].p) for c in comparisons for k in keys):
        lines.append("- n/a (n < 2): fewer than two units, no test.")
    return lines


_EXACT_NOTE = (f"- {stats.EXACT_MARK}: the units have no variance (every difference equal, or both arms constant), "
               "so a t-test is undefined: p of the exact sign test of the differences (paired, one-sample) or of "
               "the exact permutation test of the difference in means (two-sample) instead; equal constants give "
               "p = 1.")


def _cell(s: stats.Summary, t: Optional[stats.Test] = None) -> str:
    return f"{s}{' ' + MARK if t is not None and stats.significant(t) else ''}"


def _ci(ci: Tuple[float, float]) -> str:
    return "n/a (n < 2)" if math.isnan(ci[0]) else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in body]


_TEST_KEYS = ("two_sample", "paired_trials", "paired_cases")
_TEST_HEADER = ["Δ mean", TEST_COLUMNS["two_sample"], "n trials", TEST_COLUMNS["paired_trials"], "n trial pairs",
                TEST_COLUMNS["paired_cases"], "n cases", "95% CI of Δ (cluster bootstrap)"]


def _test_cells(c: Dict) -> List[str]:
    return [f"{c['diff']:+.3f}", str(c["two_sample"]), c["two_sample"].n_text, str(c["paired_trials"]),
            c["paired_trials"].n_text, str(c["paired_cases"]), c["paired_cases"].n_text, _ci(c["ci"])]


def _cells_caption(n_trials: int, what: str) -> str:
    return (f"Cells: {what}, mean ± sd over trials (n = {n_trials} trial{'s' if n_trials != 1 else ''} per arm) of "
            "each trial's mean DSC over the test cases (sd 0 with one trial).")


# ---------------------------------------------------------------------------- sections per design
def _per_unit_section(p: Protocol, rows: Rows, arms: List[str], base: str, setting: str, unit_name: str,
                      n_trials: int) -> List[str]:
    primary = primary_test(n_trials)
    units = rows.units()
    body, detail, comps = [], [], []
    for u in units + [None]:
        label = u if u is not None else (f"**mean over {unit_name}es**" if unit_name == "class" else "**mean**")
        cells = []
        for a in arms:
            if a == base:
                cells.append(_cell(stats.summarize(rows.trial_means(a, setting, u))))
                continue
            c = compare(rows, a, base, setting, u)
            comps.append(c)
            cells.append(_cell(c["a"], c[primary]))
            detail.append([label, f"{a} − {base}"] + _test_cells(c))
        body.append([label] + cells)
    what = f"per {unit_name} (a group: mean over its classes)" if unit_name == "group" else f"per {unit_name}"
    lines = _md_table([unit_name] + arms, body)
    caption = _cells_caption(n_trials, what) + " The mean row averages each trial's per-class means first."
    if not comps:
        return lines + ["", caption + f" No arm besides the baseline {base}: no test."]
    lines += ["", caption + " " + _mark_caption(primary, base, [c[primary] for c in comps]), "",
              f"Tests of each arm against {base}:", ""]
    lines += _md_table([unit_name, "arms"] + _TEST_HEADER, detail)
    return lines + [""] + _test_notes(comps, _TEST_KEYS)


def _sweep_series(rows: Rows, arms: List[str], settings: List[str]) -> Dict[str, List[Tuple[float, float, float]]]:
    out = {}
    for a in arms:
        pts = []
        for s in settings:
            sm = stats.summarize(rows.trial_means(a, s, None))
            if sm.n:
                pts.append((float(s), sm.mean, sm.sd))
        out[a] = pts
    return out


def _sweep_section(p: Protocol, rows: Rows, arms: List[str], base: str, settings: List[str], out: Path,
                   runs: List[Dict], n_trials: int) -> List[str]:
    name = SETTING_NAMES[p.design]
    primary = primary_test(n_trials)
    body, detail, comps = [], [], []
    for s in settings:
        cells = []
        for a in arms:
            if a == base or not rows.trial_means(a, s, None):
                cells.append(_cell(stats.summarize(rows.trial_means(a, s, None))))
                continue
            c = compare(rows, a, base, s, None, "0" if p.design == "pretrain_scale" else None)
            comps.append(c)
            cells.append(_cell(c["a"], c[primary]))
            detail.append([s, f"{a} − {base}"] + _test_cells(c))
        body.append([s] + cells)
    against = f"{base} (no pre-training)" if p.design == "pretrain_scale" else f"{base} at the same {name}"
    lines = _md_table([name] + arms, body)
    if comps:
        lines += ["", _cells_caption(n_trials, "mean DSC over classes") + " "
                  + _mark_caption(primary, against, [c[primary] for c in comps]), "",
                  f"Tests of each arm against {against}:", ""]
        lines += _md_table([name, "arms"] + _TEST_HEADER, detail)
        lines += [""] + _test_notes(comps, _TEST_KEYS)
    else:
        lines += ["", _cells_caption(n_trials, "mean DSC over classes") + f" No arm to compare with {against}."]
    series = _sweep_series(rows, arms, settings)
    if p.design == "target_size":
        lines += ["", "**Annotation saving**: the fewest cases each arm needs to reach the baseline's mean DSC "
                  "at each size (from the sizes run; means over trials, no test).", ""]
        body = []
        for s in settings:
            goal = stats.summarize(rows.trial_means(base, s, None)).mean
            for a in arms:
                if a == base or math.isnan(goal):
                    continue
                reach = [int(x) for x, m, _ in sorted(series[a]) if m >= goal]
                need = reach[0] if reach else None
                saving = f"{1 - need / float(s):.0%}" if need is not None else "not reached"
                body.append([s, f"{goal:.3f}", a, need if need is not None else "—", saving])
        lines += _md_table([f"{base} {name}", f"{base} DSC", "arm", "cases the arm needs", "annotation saving"],
                           body)
    annotations, reference = None, None
    if p.design == "pretrain_scale":
        hours = defaultdict(list)
        for r in runs:
            if not math.isnan(r.get("pretrain_seconds", float("nan"))):
                hours[(r["arm"], r["setting"])].append(r["pretrain_seconds"] / 3600)
        lines += ["", "Pre-training compute per point (hours on this machine, mean over the trials' runs):", ""]
        lines += _md_table(["pre-training cases", "arm", "pre-training hours"],
                           [[s, a, f"{np.mean(hours[(a, s)]):.3f}"] for a in arms for s in settings
                            if hours.get((a, s))])
        annotations = {a: [f"{np.mean(hours[(a, str(int(x)))]):.2f} h" if hours.get((a, str(int(x)))) else ""
                           for x, _, _ in sorted(series[a])] for a in arms}
        ref = [a for a in arms if {x for x, _, _ in series[a]} == {0.0}]
        for a in ref:
            sm = stats.summarize(rows.trial_means(a, "0", None))
            reference = (f"{a} (no pre-training)", sm.mean, sm.sd)
            series.pop(a)
    fig = out / f"{p.name}.png"
    sweep_plot(series, fig, name.replace("_", " "), "DSC (mean over classes)", f"{p.paper}: {p.title}",
               log_x=p.design == "pretrain_scale", annotations=annotations, reference=reference)
    return lines + ["", f"![{p.paper}]({fig.name})"]


def _ood_section(p: Protocol, rows: Rows, arms: List[str], base: str, settings: List[str],
                 published: Mapping[str, Mapping[str, float]]) -> List[str]:
    """OOD (direct inference, one deterministic run) against IID (trained on the dataset, trials).
    Both predict the same test cases, so the primary test pairs them by case: per-case OOD DSC
    against the per-case IID DSC averaged over the IID trials. Beside it, at the trial level: the
    OOD mean of one run is a constant of the test set, so the IID trial means are tested against
    it (one-sample t-test; Welch's two-sample test over trials with no OOD variance reduces to it);
    with several OOD trials, Student's two-sample test. Where the protocol carries a published IID
    DSC for the dataset and class (`published_iid` of a target), the paper's one-sample t-test of the
    per-case OOD DSC against it is the primary test instead."""
    ood = next(a for a in arms if a != base)
    ood_trials = len(rows.trials(ood))
    body, tests = [], {"case": [], "trial": [], "published": []}
    any_pub = any(published.get(s) for s in settings)
    for s in settings:
        classes = list(dict.fromkeys(r["class"] for r in rows.rows if r["setting"] == s and r["arm"] == ood))
        for c in classes + [None]:
            co = stats.case_means(rows.case_values(ood, s, c))
            ci_ = stats.case_means(rows.case_values(base, s, c))
            so = stats.summarize(list(co.values()))
            iid_t = rows.trial_values(base, s, c)
            si = stats.summarize(list(iid_t.values()))
            shared = [k for k in co if k in ci_]
            diff = float(np.mean([co[k] - ci_[k] for k in shared])) if shared else float("nan")
            t_case = stats.paired(co, ci_)
            ci = stats.cluster_bootstrap_diff_ci(rows.case_values(ood, s, c), rows.case_values(base, s, c))
            if ood_trials >= 2:
                t_trial = stats.two_sample(rows.trial_means(ood, s, c), list(iid_t.values()))
            else:
                t_trial = stats.one_sample(list(iid_t.values()), so.mean)
            pub = published.get(s, {}).get(c if c is not None else "mean")
            t_pub = stats.one_sample(list(co.values()), pub) if pub is not None else None
            tests["case"].append(t_case)
            tests["trial"].append(t_trial)
            if t_pub is not None:
                tests["published"].append(t_pub)
            row = [s, c or "**mean**", _cell(so, t_pub if t_pub is not None else t_case), so.n, str(si), si.n,
                   f"{diff:+.3f}" if not math.isnan(diff) else "n/a", _ci(ci), str(t_case), t_case.n_text, str(t_trial)]
            if any_pub:
                row += [f"{pub:.3f}" if pub is not None else "—", str(t_pub) if t_pub is not None else "—"]
            body.append(row)
    header = ["dataset", "class", f"{ood} (OOD) DSC", "n cases", f"{base} (IID) DSC", "n trials",
              "Δ (OOD − IID)", "95% CI of Δ (cluster bootstrap)", "p (paired, cases)", "n case pairs", "p (trials)"]
    if any_pub:
        header += ["published IID DSC", "p (one-sample, published)"]
    trial_test = ("two-sided Student's two-sample t-test of the OOD trials' against the IID trials' means "
                  "(unit: trial)" if ood_trials >= 2 else
                  f"two-sided one-sample t-test of the IID trials' means against the OOD mean (unit: IID trial): "
                  f"the OOD arm is one deterministic run ({ood_trials} trial), so its mean over the test cases is a "
                  "constant of the test set and Welch's two-sample test over trials reduces to this test")
    lines = _md_table(header, body)
    lines += ["", f"{ood}: direct inference of the pre-trained model (no training), mean ± sd over test cases "
              + ("(one run)" if ood_trials == 1 else f"(each case averaged over the arm's {ood_trials} runs)")
              + f". {base}: a model "
              "trained on the dataset's own training cases, mean ± sd over trials of each trial's mean over the "
              "test cases. Δ: mean over the test cases of (OOD − IID averaged over trials).",
              f"{MARK}: P < 0.05, "
              + (f"where a published IID DSC is given: two-sided one-sample t-test of the per-case OOD DSC against "
                 f"it (unit: test case, the paper's test, {_n_phrase(tests['published'], 'test cases')}); "
                 "elsewhere: " if any_pub else "")
              + "two-sided paired t-test over test cases (unit: test case; each case's OOD DSC against its IID "
              f"DSC averaged over the IID trials), {_n_phrase(tests['case'], 'test cases')}: both arms predict the "
              "same test cases, so they pair by case.",
              f"p (trials): {trial_test}; {_n_phrase(tests['trial'], 'trials')}.",
              f"95% CI of Δ: percentile interval of a two-way cluster bootstrap ({stats.BOOTSTRAP_RESAMPLES} replicates, "
              "seed 0): each replicate redraws the test cases (one draw for both arms) and each arm's trials with "
              "replacement, and takes each arm's mean over the drawn (trial, case) cells."]
    every = tests["case"] + tests["trial"] + tests["published"]
    if any(t.exact for t in every):
        lines.append(_EXACT_NOTE[2:])
    if any(math.isnan(t.p) for t in every):
        lines.append("n/a (n < 2): fewer than two units, no test.")
    return lines


def _time_to_target(cs: List[Dict], target: float) -> Tuple[float, float, bool]:
    """(seconds, epoch, reached) of one trial's curve: the first epoch at or above `target`, else
    the last epoch (censored: the target was not reached within the budget)."""
    hit = next((c for c in cs if c["val_dsc_ema"] >= target), None)
    last = hit or cs[-1]
    return last["seconds"], last["epoch"], hit is not None


def _curve_section(p: Protocol, rows: Rows, curves: List[Dict], arms: List[str], base: str, out: Path
                   ) -> List[str]:
    by: Dict[str, Dict[int, List[Dict]]] = defaultdict(lambda: defaultdict(list))
    for c in curves:
        by[c["arm"]][c["trial"]].append(c)
    finals = [sorted(v, key=lambda c: c["epoch"])[-1] for v in by[base].values()]
    target = float(np.mean([f["val_dsc_ema"] for f in finals])) if finals else float("nan")
    base_time = float(np.mean([f["seconds"] for f in finals])) if finals else float("nan")
    body, n_per_arm = [], []
    for a in arms:
        trials = [sorted(cs, key=lambda c: c["epoch"]) for _, cs in sorted(by[a].items())]
        hits = [_time_to_target(cs, target) for cs in trials if cs]
        secs, epochs, reached = ([h[i] for h in hits] for i in range(3))
        n_per_arm.append(len(hits))
        med_s, med_e = stats.km_median(secs, reached), stats.km_median(epochs, reached)
        budget = max([s for s, r in zip(secs, reached) if not r], default=float("nan"))
        if math.isnan(med_s):
            when, speed = "n/a (no curve)", "n/a"
        elif math.isinf(med_s):
            when = f"> {budget:.0f} s (the budget; fewer than half the trials reached it)"
            speed = f"< {base_time / budget:.2f}×" if budget > 0 else "n/a"
        else:
            when = f"{med_s:.0f} s (epoch {med_e:.0f})"
            speed = f"{base_time / med_s:.2f}×" if med_s > 0 else "n/a"
        test = stats.summarize(rows.trial_means(a, None, None))
        body.append([a, str(stats.summarize([cs[-1]["val_dsc_ema"] for cs in trials if cs])), when,
                     f"{sum(reached)}/{len(reached)}", speed, str(test)])
    ns = list(dict.fromkeys(n_per_arm))
    n_text = f"n = {ns[0]} trials per arm" if len(ns) == 1 else f"n = {' / '.join(map(str, n_per_arm))} trials"
    lines = [f"Target: {base}'s final validation pseudo-DSC, {target:.3f} (mean over its trials), reached by "
             f"{base} after {base_time:.0f} s (mean over its trials).", ""]
    lines += _md_table(["arm", "final val DSC (EMA)", "median time to reach the target", "trials that reached it",
                        "speed-up vs " + base, "test DSC"], body)
    lines += ["", f"Median time to the target: Kaplan–Meier median over trials (unit: trial, {n_text}; "
              "scipy.stats.ecdf): a trial that never reaches the target is right-censored at its last validation "
              "(the end of its budget) rather than left out; the median is the first time at which at most half "
              "the trials are still below the target, '> budget' when fewer than half reach it. Speed-up: "
              f"{base}'s mean training time over that median. Final val DSC and test DSC: mean ± sd over trials."]
    fig = out / f"{p.name}.png"
    curve_plot({a: [([c["seconds"] for c in sorted(cs, key=lambda c: c["epoch"])],
                     [c["val_dsc_ema"] for c in sorted(cs, key=lambda c: c["epoch"])])
                    for _, cs in sorted(by[a].items())] for a in arms}, fig,
               None if math.isnan(target) else target, f"{p.paper}: {p.title}")
    return lines + ["", "Time is wall-clock training time on this machine (validation included); the paper "
                    "reports GPU hours.", "", f"![{p.paper}]({fig.name})"]


# ---------------------------------------------------------------------------- the report
def write_report(folder: Path) -> Path:
    """report.md (+ PNGs) of one protocol results folder, from its CSVs and recorded protocol."""
    folder = Path(folder)
    meta_f, proto_f = folder / "experiment.json", folder / "protocol.json"
    for f in (meta_f, proto_f, folder / "results.csv"):
        if not f.is_file():
            raise MissingFileError(f"{f}: missing; not an experiment results folder (run suprem_experiment run)")
    meta = json.loads(meta_f.read_text())
    p = protocol_from_dict(json.loads(proto_f.read_text()), str(proto_f))
    scale = p.scale(meta["scale"])
    source = "scores.csv" if p.design == "classification" else "results.csv"
    all_rows = read_rows(folder / source)
    runs = read_rows(folder / "runs.csv")
    curves = read_rows(folder / "curves.csv")
    if not all_rows:
        raise InputError(f"{folder / source}: no rows")
    rows = Rows(all_rows, group_of=class_group if p.design == "novel_groups" else None)
    arms = [a.name for a in scale.arms if any(r["arm"] == a.name for r in all_rows)]
    if p.design == "classification":  # arms a run adds to its rows (oracle ROI, hand-feature baseline)
        arms += [a for a in dict.fromkeys(r["arm"] for r in all_rows) if a not in arms]
    settings = list(dict.fromkeys(r["setting"] for r in all_rows))
    if p.design in ("few_shot", "target_size", "pretrain_scale"):
        settings = sorted(settings, key=float)
    trials = sorted({r["trial"] for r in all_rows})
    n_cases = len({r["case"] for r in all_rows})
    lines = [f"# {p.paper}: {p.title}", "", p.description, "",
             f"- protocol `{p.name}` (design `{p.design}`), scale **{meta['scale']}**, **{len(trials)} trial(s)** "
             f"(the paper: 10), {n_cases} test case(s)",
             f"- target dataset(s): {', '.join(sorted({meta['datasets'].get(str(t.dataset), str(t.dataset)) for t in scale.targets}))}",
             f"- fine-tuning budget: {scale.budget.epochs} epochs × {scale.budget.iterations_per_epoch} iterations, "
             f"{scale.budget.optimizer}" + (f", lr {scale.budget.lr}" if scale.budget.lr else ""),
             f"- every cell is computed from `{source}` (one row per arm, setting, trial, case and class); "
             f"`suprem_experiment report {folder}` regenerates this file", ""]
    if p.design in ("arms", "novel_groups"):
        unit = "group" if p.design == "novel_groups" else "class"
        for s in settings:
            if len(settings) > 1:
                lines += [f"## {p.setting_name} = {s}", ""]
            lines += _per_unit_section(p, rows, arms, scale.baseline, s, unit, len(trials)) + [""]
            if p.design == "novel_groups":
                groups = defaultdict(list)
                for c in dict.fromkeys(r["class"] for r in all_rows):
                    groups[class_group(c)].append(c)
                lines += ["Groups: " + "; ".join(f"{g}: {', '.join(cs)}" for g, cs in groups.items()),
                          "Groups with no class in this target (e.g. cardiac for the phantoms) are not in the table.",
                          ""]
        _bars(p, rows, arms, settings[0], folder, lines)
    elif p.design in ("few_shot", "target_size", "pretrain_scale"):
        lines += _sweep_section(p, rows, arms, scale.baseline, settings, folder, runs, len(trials)) + [""]
    elif p.design == "ood":
        lines += _ood_section(p, rows, arms, scale.baseline, settings, _published_iid(scale, meta)) + [""]
    elif p.design == "learning_curve":
        lines += _curve_section(p, rows, curves, arms, scale.baseline, folder) + [""]
    elif p.design == "classification":
        lines += classification_section(p.name, p.paper, all_rows, arms, scale.baseline, folder) + [""]
    if p.design in ("arms", "novel_groups", "few_shot", "target_size") and curves:
        largest = settings[-1]  # the sweep's largest size (sorted above); the one setting of arms designs
        lines += plateau_section(curves, arms, largest, folder / f"{p.name}_curves.png",
                                 f"{p.paper}: validation DSC per epoch ({p.setting_name} = {largest})")
    lines += _runs_section(runs)
    report = folder / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode())
    return report


def _published_iid(scale, meta: Dict) -> Dict[str, Dict[str, float]]:
    """{dataset short name (the ood setting): {class or 'mean': published IID DSC}} from the targets'
    `published_iid`."""
    out = {}
    for t in scale.targets:
        name = meta["datasets"].get(str(t.dataset), "")
        if t.published_iid and name:
            out[name.split("_", 1)[1] if "_" in name else name] = dict(t.published_iid)
    return out


def _bars(p: Protocol, rows: Rows, arms: List[str], setting: str, folder: Path, lines: List[str]) -> None:
    scores = {a: {u: stats.summarize(rows.trial_means(a, setting, u)).mean for u in rows.units()} for a in arms}
    fig = folder / f"{p.name}.png"
    score_bars(scores, fig, "DSC", f"{p.paper}: mean over trials")
    lines += [f"![{p.paper}]({fig.name})", ""]


def _runs_section(runs: List[Dict]) -> List[str]:
    if not runs:
        return []
    total = sum(r["seconds"] for r in runs if not math.isnan(r["seconds"]))
    by = defaultdict(list)
    for r in runs:
        by[r["arm"]].append(r["seconds"])
    lines = ["## Runs", "", f"{len(runs)} runs, {total / 60:.1f} min of training + prediction + evaluation "
             "(pre-trainings are cached and shared by the protocols; not included).", ""]
    lines += _md_table(["arm", "runs", "seconds per run (mean)"],
                       [[a, len(v), f"{np.mean(v):.0f}" if not np.isnan(v).all() else "n/a"] for a, v in by.items()])
    return lines + [""]
