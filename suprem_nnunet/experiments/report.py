"""report.md and PNG figures of one protocol's results folder, computed from its rows only
(results.csv, curves.csv, runs.csv) and the protocol it recorded; `suprem_experiment report DIR`
regenerates them from old results.

Unit of the paper's tests: a trial. A per-class cell is the mean ± sd over trials of that trial's
mean DSC over test cases; an overall cell averages the per-class means of a trial first (as
evaluation does). The paired test and the bootstrap CI pair (trial, case) values of two arms.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..dataset.raw import atomic_write_bytes
from ..labels.table import canonical
from . import stats
from .figures import curve_plot, sweep_plot
from .protocol import SETTING_NAMES, Protocol, protocol_from_dict

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
    from ..labels import BY_NAME, TOTALSEG_V2, totalseg_group

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

    def case_values(self, arm: str, setting: Optional[str], unit: Optional[str]) -> Dict[Tuple, float]:
        """{(trial, case): value}: the metric of `unit` (a class, or a group: mean over its
        classes), or over all classes when unit is None (mean over the case's classes)."""
        acc: Dict[Tuple, List[float]] = defaultdict(list)
        for r in self._select(arm, setting):
            if unit is None or self.unit(r) == unit:
                if not math.isnan(r[self.metric]):
                    acc[(r["trial"], r["case"])].append(r[self.metric])
        return {k: float(np.mean(v)) for k, v in acc.items()}

    def trial_means(self, arm: str, setting: Optional[str], unit: Optional[str]) -> List[float]:
        """Per trial: mean over test cases of each class, then over the classes of `unit` (or all)."""
        per: Dict[int, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))
        for r in self._select(arm, setting):
            if (unit is None or self.unit(r) == unit) and not math.isnan(r[self.metric]):
                per[r["trial"]][r["class"]].append(r[self.metric])
        return [float(np.mean([np.mean(v) for v in per[t].values()])) for t in sorted(per)]


def compare(rows: Rows, arm: str, base: str, setting: Optional[str], unit: Optional[str],
            base_setting: Optional[str] = None) -> Dict:
    """Two-sample t-test over trials, paired t-test and bootstrap CI over (trial, case) pairs; the
    baseline at `base_setting` (default: the same setting)."""
    bs = setting if base_setting is None else base_setting
    a, b = rows.trial_means(arm, setting, unit), rows.trial_means(base, bs, unit)
    ca, cb = rows.case_values(arm, setting, unit), rows.case_values(base, bs, unit)
    keys = [k for k in ca if k in cb]
    p_pair, n_pair = stats.paired(ca, cb)
    lo, hi = stats.bootstrap_diff_ci([ca[k] for k in keys], [cb[k] for k in keys], paired_samples=True)
    sa, sb = stats.summarize(a), stats.summarize(b)
    return {"a": sa, "b": sb, "diff": sa.mean - sb.mean, "p": stats.two_sample(a, b), "p_paired": p_pair,
            "n_pairs": n_pair, "ci": (lo, hi)}


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def _cell(s: stats.Summary, p: Optional[float] = None) -> str:
    return f"{s}{' ' + MARK if p is not None and stats.significant(p) else ''}"


def _ci(ci: Tuple[float, float]) -> str:
    return "n/a" if math.isnan(ci[0]) else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in body]


# ---------------------------------------------------------------------------- sections per design
def _per_unit_section(p: Protocol, rows: Rows, arms: List[str], base: str, setting: str, unit_name: str) -> List[str]:
    others = [a for a in arms if a != base]
    units = rows.units()
    body, detail = [], []
    for u in units + [None]:
        cells = []
        for a in arms:
            if a == base:
                cells.append(_cell(stats.summarize(rows.trial_means(a, setting, u))))
            else:
                c = compare(rows, a, base, setting, u)
                cells.append(_cell(c["a"], c["p"]))
                detail.append([u or f"**mean over {unit_name}es**" if unit_name == "class" else u or "**mean**",
                               f"{a} − {base}", f"{c['diff']:+.3f}", _p(c["p"]), f"{c['a'].n} + {c['b'].n}",
                               _p(c["p_paired"]), c["n_pairs"], _ci(c["ci"])])
        label = u if u is not None else (f"**mean over {unit_name}es**" if unit_name == "class" else "**mean**")
        body.append([label] + cells)
    lines = _md_table([unit_name] + arms, body)
    lines += ["", f"{MARK}: P < 0.05, independent two-sample t-test (Student's) against {base} over trials.", "",
              "Tests of each arm against the baseline:", ""]
    lines += _md_table([unit_name, "arms", "Δ mean", "p (two-sample)", "n trials", "p (paired)", "n pairs",
                        "bootstrap 95% CI of Δ"], detail)
    return lines


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
                   runs: List[Dict]) -> List[str]:
    name = SETTING_NAMES[p.design]
    body, detail = [], []
    for s in settings:
        cells = []
        for a in arms:
            if a == base or not rows.trial_means(a, s, None):
                cells.append(_cell(stats.summarize(rows.trial_means(a, s, None))))
                continue
            c = compare(rows, a, base, s, None, "0" if p.design == "pretrain_scale" else None)
            cells.append(_cell(c["a"], c["p"]))
            detail.append([s, f"{a} − {base}", f"{c['diff']:+.3f}", _p(c["p"]), f"{c['a'].n} + {c['b'].n}",
                           _p(c["p_paired"]), c["n_pairs"], _ci(c["ci"])])
        body.append([s] + cells)
    lines = _md_table([name] + arms, body)
    lines += ["", f"Cells: mean DSC over classes and test cases, mean ± sd over trials. {MARK}: P < 0.05, "
              f"independent two-sample t-test (Student's) against {base} " + ("(no pre-training)." if p.design == "pretrain_scale" else f"at the same {name}."), ""]
    lines += _md_table([name, "arms", "Δ mean", "p (two-sample)", "n trials", "p (paired)", "n pairs",
                        "bootstrap 95% CI of Δ"], detail)
    series = _sweep_series(rows, arms, settings)
    if p.design == "target_size":
        lines += ["", "**Annotation saving**: the fewest cases each arm needs to reach the baseline's mean DSC "
                  "at each size (from the sizes run).", ""]
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
        lines += ["", "Pre-training compute per point (hours on this machine):", ""]
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


def _ood_section(p: Protocol, rows: Rows, arms: List[str], base: str, settings: List[str]) -> List[str]:
    ood = next(a for a in arms if a != base)
    body = []
    for s in settings:
        classes = sorted({r["class"] for r in rows.rows if r["setting"] == s and r["arm"] == ood},
                         key=lambda c: [r["class"] for r in rows.rows].index(c))
        for c in classes + [None]:
            per_case = list(rows.case_values(ood, s, c).values())
            iid = stats.summarize(rows.trial_means(base, s, c))
            p_one = stats.one_sample(per_case, iid.mean)
            so = stats.summarize(per_case)
            body.append([s, c or "**mean**", _cell(so, p_one), so.n, str(iid), iid.n, f"{so.mean - iid.mean:+.3f}",
                         _p(p_one)])
    lines = _md_table(["dataset", "class", f"{ood} (OOD) DSC", "n cases", f"{base} (IID) DSC", "n trials",
                       "Δ (OOD − IID)", "p (one-sample)"], body)
    return lines + ["", f"{ood}: direct inference of the pre-trained model (no training, one run), mean ± sd over "
                    f"test cases. {base}: a model trained on the dataset's own training cases, mean ± sd over "
                    f"trials. {MARK}: P < 0.05, one-sample t-test of the per-case OOD DSC against the IID mean."]


def _curve_section(p: Protocol, rows: Rows, curves: List[Dict], arms: List[str], base: str, out: Path
                   ) -> List[str]:
    by: Dict[str, Dict[int, List[Dict]]] = defaultdict(lambda: defaultdict(list))
    for c in curves:
        by[c["arm"]][c["trial"]].append(c)
    finals = [sorted(v, key=lambda c: c["epoch"])[-1] for v in by[base].values()]
    target = float(np.mean([f["val_dsc_ema"] for f in finals])) if finals else float("nan")
    base_time = float(np.mean([f["seconds"] for f in finals])) if finals else float("nan")
    body = []
    for a in arms:
        reach_s, reach_e, final = [], [], []
        for t, cs in sorted(by[a].items()):
            cs = sorted(cs, key=lambda c: c["epoch"])
            final.append(cs[-1]["val_dsc_ema"])
            hit = next((c for c in cs if c["val_dsc_ema"] >= target), None)
            reach_s.append(hit["seconds"] if hit else float("nan"))
            reach_e.append(hit["epoch"] if hit else float("nan"))
        reached = [x for x in reach_s if not math.isnan(x)]
        test = stats.summarize(rows.trial_means(a, None, None))
        when = (f"{np.mean(reached):.0f} s (epoch {np.nanmean(reach_e):.1f}); {len(reached)}/{len(reach_s)} trials"
                if reached else f"not reached (0/{len(reach_s)} trials)")
        speed = f"{base_time / np.mean(reached):.2f}×" if reached and np.mean(reached) > 0 else "n/a"
        body.append([a, str(stats.summarize(final)), when, speed, str(test)])
    lines = [f"Target: {base}'s final validation pseudo-DSC, {target:.3f} (mean over its trials), reached by "
             f"{base} after {base_time:.0f} s.", ""]
    lines += _md_table(["arm", "final val DSC (EMA)", "time to reach the target", "speed-up vs " + base,
                        "test DSC"], body)
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
            raise FileNotFoundError(f"{f}: missing; not an experiment results folder (run suprem_experiment run)")
    meta = json.loads(meta_f.read_text())
    p = protocol_from_dict(json.loads(proto_f.read_text()), str(proto_f))
    scale = p.scale(meta["scale"])
    source = "scores.csv" if p.design == "classification" else "results.csv"
    all_rows = read_rows(folder / source)
    runs = read_rows(folder / "runs.csv")
    curves = read_rows(folder / "curves.csv")
    if not all_rows:
        raise ValueError(f"{folder / source}: no rows")
    rows = Rows(all_rows, group_of=class_group if p.design == "novel_groups" else None)
    arms = [a.name for a in scale.arms if any(r["arm"] == a.name for r in all_rows)]
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
            lines += _per_unit_section(p, rows, arms, scale.baseline, s, unit) + [""]
            if p.design == "novel_groups":
                groups = defaultdict(list)
                for c in dict.fromkeys(r["class"] for r in all_rows):
                    groups[class_group(c)].append(c)
                lines += ["Groups: " + "; ".join(f"{g}: {', '.join(cs)}" for g, cs in groups.items()),
                          "Groups with no class in this target (e.g. cardiac for the phantoms) are not in the table.",
                          ""]
        _bars(p, rows, arms, settings[0], folder, lines)
    elif p.design in ("few_shot", "target_size", "pretrain_scale"):
        lines += _sweep_section(p, rows, arms, scale.baseline, settings, folder, runs) + [""]
    elif p.design == "ood":
        lines += _ood_section(p, rows, arms, scale.baseline, settings) + [""]
    elif p.design == "learning_curve":
        lines += _curve_section(p, rows, curves, arms, scale.baseline, folder) + [""]
    elif p.design == "classification":
        from .report_classification import classification_section

        lines += classification_section(p.name, p.paper, all_rows, arms, scale.baseline, folder) + [""]
    lines += _runs_section(runs)
    report = folder / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode())
    return report


def _bars(p: Protocol, rows: Rows, arms: List[str], setting: str, folder: Path, lines: List[str]) -> None:
    from ..evaluation.figures import score_bars

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
