"""Classification evaluation: one-vs-rest ROC per sub-type, AUC with a DeLong 95% CI, operating
points, confusion matrix, and an ROC figure in the style of the SuPreM paper's Fig 3.

Inputs: `scores.csv` (a `case` column, one score column per class named by its sub-type, higher =
more likely; an optional `prediction` column, else the arg-max class is the prediction; as
`suprem_classify predict` writes) and a labels file (`case_labels.csv`, see `data.py`). Every
scored case must have a label (else one error naming the file); labelled cases without a score
are left out (a labels file usually also lists the training cases).

Per class k (one-vs-rest: positives are the cases labelled k):
  * ROC and AUC by scikit-learn (`roc_curve`, `roc_auc_score`); the 95% CI from DeLong's variance
    (DeLong et al. 1988, with Sun & Xu's 2014 mid-rank algorithm): AUC ± 1.96 sd, clipped to [0, 1];
  * Youden point: the threshold maximising sensitivity + specificity - 1;
  * 95%-specificity point: the highest sensitivity among thresholds with specificity >= 0.95;
  * a class with no positive or no negative case has no ROC: its AUC is NaN with a note saying so.
Two arms (pre-trained vs scratch) on the same cases also get DeLong's paired test of their AUCs.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
from scipy import stats

from .data import SUBTYPES, canonical_subtype, read_case_labels
from ..dataset.raw import atomic_write_bytes, atomic_write_json, atomic_save_figure
from ..evaluation.figures import default_style, pyplot
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
MIN_SPECIFICITY = 0.95
SUBTYPE_TITLES = {"none": "Lesion-free", "pdac": "PDAC", "cyst": "Cyst", "pannet": "PanNET"}


# ---------------------------------------------------------------------------- files
def read_scores(path: PathLike) -> Tuple[List[str], Dict[str, np.ndarray], Dict[str, Optional[str]]]:
    """(classes, {case: scores in class order}, {case: predicted class or None}) of a scores CSV."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such scores file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [(h or "").strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    if "case" not in header:
        raise InputError(f"{path}: needs a 'case' column and one score column per sub-type")
    classes, columns = [], []
    for h in header:
        if h in ("case", "prediction"):
            continue
        k = canonical_subtype(h)
        if k is None:
            raise InputError(f"{path}: column {h!r} is not a sub-type (known: {', '.join(SUBTYPES)})")
        classes.append(k)
        columns.append(h)
    if not classes:
        raise InputError(f"{path}: no score column (one per sub-type: {', '.join(SUBTYPES)})")
    scores, preds = {}, {}
    for line, row in enumerate(rows, start=2):
        case = (row.get("case") or "").strip()
        if case in scores:
            raise InputError(f"{path}: line {line}: case {case!r} is listed twice")
        try:
            vals = np.array([float(row[h]) for h in columns])
        except (TypeError, ValueError):
            raise InputError(f"{path}: line {line}: case {case!r} has a score that is not a number") from None
        if not np.isfinite(vals).all():
            raise InputError(f"{path}: line {line}: case {case!r} has a NaN or infinite score")
        scores[case] = vals
        p = (row.get("prediction") or "").strip()
        preds[case] = canonical_subtype(p) if p else None
        if p and preds[case] is None:
            raise InputError(f"{path}: line {line}: unknown predicted sub-type {p!r}")
    if not scores:
        raise InputError(f"{path}: no cases")
    return classes, scores, preds


# ---------------------------------------------------------------------------- statistics
def _midrank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def delong(y_true: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(AUCs, covariance) of the score rows of `scores` (arms, cases) for binary `y_true` (DeLong)."""
    scores = np.atleast_2d(np.asarray(scores, float))
    y = np.asarray(y_true).astype(bool)
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    k = scores.shape[0]
    tx = np.stack([_midrank(r) for r in pos])
    ty = np.stack([_midrank(r) for r in neg])
    tz = np.stack([_midrank(np.concatenate([p, q])) for p, q in zip(pos, neg)])
    aucs = (tz[:, :m].sum(1) / m - (m + 1) / 2) / n
    if m < 2 or n < 2:  # the variance needs two positives and two negatives
        return aucs, np.full((k, k), np.nan)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.cov(v01).reshape(k, k) / m + np.cov(v10).reshape(k, k) / n
    return aucs, cov


def operating_points(y: np.ndarray, s: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Youden and >= 95%-specificity points: threshold, sensitivity, specificity."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, s)
    i = int(np.argmax(tpr - fpr))
    ok = np.flatnonzero(1 - fpr >= MIN_SPECIFICITY)
    j = int(ok[np.argmax(tpr[ok])])  # fpr[0] == 0, so never empty
    # threshold inf (written as null in JSON): no case is called positive at that point
    pt = lambda t: {"threshold": float(thr[t]), "sensitivity": float(tpr[t]),  # noqa: E731
                    "specificity": float(1 - fpr[t])}
    return {"youden": pt(i), "spec95": pt(j)}


def class_metrics(y: np.ndarray, s: np.ndarray) -> Dict:
    """One-vs-rest metrics of one class (see the module docstring)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out: Dict = {"n_pos": n_pos, "n_neg": n_neg}
    if n_pos == 0 or n_neg == 0:
        out.update(auc=math.nan, ci_low=math.nan, ci_high=math.nan,
                   note=f"AUC undefined: no {'positive' if n_pos == 0 else 'negative'} case")
        return out
    auc = float(roc_auc_score(y, s))
    _, cov = delong(y, s[None])
    fpr, tpr, _ = roc_curve(y, s)
    out.update(auc=auc, roc={"fpr": fpr.tolist(), "tpr": tpr.tolist()}, **operating_points(y, s))
    if np.isfinite(cov[0, 0]):
        sd = math.sqrt(max(float(cov[0, 0]), 0.0))
        out.update(ci_low=max(0.0, auc - 1.96 * sd), ci_high=min(1.0, auc + 1.96 * sd))
    else:
        out.update(ci_low=math.nan, ci_high=math.nan, ci_note="CI undefined: fewer than 2 positive or 2 negative cases")
    return out


def paired_delong(y: np.ndarray, s_a: np.ndarray, s_b: np.ndarray) -> Dict[str, float]:
    """DeLong's test of AUC(a) = AUC(b) on the same cases: difference, z and two-sided p."""
    aucs, cov = delong(y, np.stack([s_a, s_b]))
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[0] - aucs[1])
    if not np.isfinite(var):
        return {"diff": diff, "z": math.nan, "p": math.nan}
    if var <= 0:
        return {"diff": diff, "z": math.nan, "p": 1.0 if diff == 0 else math.nan}
    z = diff / math.sqrt(var)
    return {"diff": diff, "z": z, "p": float(2 * stats.norm.sf(abs(z)))}


# ---------------------------------------------------------------------------- one arm
def evaluate_scores(scores_csv: PathLike, labels_csv: PathLike) -> Dict:
    """Metrics of one scores file against a labels file (see the module docstring)."""
    from sklearn.metrics import confusion_matrix

    classes, scores, preds = read_scores(scores_csv)
    labels = read_case_labels(labels_csv)
    unlabelled = sorted(c for c in scores if c not in labels)
    if unlabelled:
        raise InputError(f"{labels_csv}: no label for {len(unlabelled)} scored case(s) of {scores_csv}: "
                         f"{', '.join(unlabelled[:5])}{' ...' if len(unlabelled) > 5 else ''}")
    cases = sorted(scores)
    left_out = len([c for c in labels if c not in scores])
    if left_out:
        log.info("%s: %d labelled case(s) have no score and are left out", labels_csv, left_out)
    unscored = sorted({labels[c] for c in cases} - set(classes))
    if unscored:
        raise InputError(f"{scores_csv}: no score column for sub-type(s) {', '.join(unscored)} that "
                         f"{labels_csv} uses")
    truth = np.array([labels[c] for c in cases])
    mat = np.stack([scores[c] for c in cases])
    per_class = {k: class_metrics(truth == k, mat[:, i]) for i, k in enumerate(classes)}
    for k, m in per_class.items():
        if "note" in m:
            log.warning("%s: %s: %s", scores_csv, k, m["note"])
    predicted = np.array([preds[c] or classes[int(np.argmax(scores[c]))] for c in cases])
    cm = confusion_matrix(truth, predicted, labels=classes)
    return {"scores": str(scores_csv), "labels": str(labels_csv), "classes": classes, "n_cases": len(cases),
            "cases": cases, "truth": truth.tolist(), "score_matrix": mat.tolist(), "per_class": per_class,
            "confusion_matrix": {"labels": classes, "rows_true_cols_predicted": cm.tolist()},
            "accuracy": float(np.mean(truth == predicted))}


# ---------------------------------------------------------------------------- arms, files, figure
def evaluate_arms(arms: Mapping[str, PathLike], labels_csv: PathLike, output: PathLike) -> Dict:
    """Evaluate each arm's scores (e.g. {"pre-trained": a.csv, "scratch": b.csv}), compare the first
    two with DeLong's paired test on their common cases, write classification_metrics.json/.csv,
    confusion_matrix_<arm>.csv and roc.png under `output`; returns the results."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    results = {arm: evaluate_scores(path, labels_csv) for arm, path in arms.items()}
    names = list(results)
    comparison = {}
    if len(names) >= 2:
        a, b = results[names[0]], results[names[1]]
        common = sorted(set(a["cases"]) & set(b["cases"]))
        ia = [a["cases"].index(c) for c in common]
        ib = [b["cases"].index(c) for c in common]
        truth = np.array(a["truth"])[ia]
        for k in a["classes"]:
            if k not in b["classes"]:
                continue
            y = truth == k
            if y.all() or not y.any():
                comparison[k] = {"note": "AUC undefined: no positive or no negative case"}
                continue
            sa = np.array(a["score_matrix"])[ia, a["classes"].index(k)]
            sb = np.array(b["score_matrix"])[ib, b["classes"].index(k)]
            comparison[k] = paired_delong(y, sa, sb)
    rows = ["arm,subtype,n_pos,n_neg,auc,ci_low,ci_high,youden_threshold,youden_sensitivity,youden_specificity,"
            "spec95_threshold,spec95_sensitivity,spec95_specificity,note"]
    for arm, r in results.items():
        for k, m in r["per_class"].items():
            y, s = m.get("youden", {}), m.get("spec95", {})
            vals = [m["n_pos"], m["n_neg"], m["auc"], m["ci_low"], m["ci_high"], y.get("threshold"),
                    y.get("sensitivity"), y.get("specificity"), s.get("threshold"), s.get("sensitivity"),
                    s.get("specificity")]
            cells = ["" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)) for v in vals]
            rows.append(",".join([arm, k, *cells, m.get("note", "")]))
        cm = r["confusion_matrix"]
        text = "true\\predicted," + ",".join(cm["labels"]) + "\n" + "".join(
            f"{k}," + ",".join(map(str, row)) + "\n" for k, row in zip(cm["labels"], cm["rows_true_cols_predicted"]))
        atomic_write_bytes(out / f"confusion_matrix_{_slug(arm)}.csv", text.encode())
    atomic_write_bytes(out / "classification_metrics.csv", ("\n".join(rows) + "\n").encode())
    summary = {"arms": {arm: {k: v for k, v in r.items() if k not in ("score_matrix",)} for arm, r in results.items()},
               "comparison": {"arms": names[:2], "test": "DeLong paired", "per_class": comparison}}
    atomic_write_json(out / "classification_metrics.json", _jsonable(summary))
    roc_figure(results, out / "roc.png")
    return {"arms": results, "comparison": comparison, "output": str(out)}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_") or "arm"


def _jsonable(o):
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    return o


def roc_figure(results: Mapping[str, Dict], path: PathLike, title: str = "") -> Path:
    """One panel per sub-type (lesion-free last, and only if scored), one ROC curve per arm with
    its AUC [95% CI] in the legend and its Youden point marked, chance diagonal dashed (the layout
    of the SuPreM paper's Fig 3). A panel whose AUC is undefined says so."""

    with default_style():
        return atomic_save_figure(_roc_figure(pyplot(), results, title), path, dpi=130)


def _roc_figure(plt, results: Mapping[str, Dict], title: str):
    first = next(iter(results.values()))
    panels = [k for k in first["classes"] if k != "none"] + (["none"] if "none" in first["classes"] else [])
    colors = ["#c0392b", "#2c3e50", "#27ae60", "#8e44ad"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    for ax, k in zip(axes[0], panels):
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6")
        for (arm, r), col in zip(results.items(), colors):
            m = r["per_class"].get(k)
            if m is None:
                continue
            if "roc" not in m:
                ax.text(0.5, 0.5 - 0.08 * list(results).index(arm), f"{arm}: {m['note']}", ha="center",
                        fontsize=7, color=col)
                continue
            ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], color=col, lw=1.8,
                    label=f"{arm}: AUC {m['auc']:.2f} [{m['ci_low']:.2f}-{m['ci_high']:.2f}]")
            y = m["youden"]
            ax.plot(1 - y["specificity"], y["sensitivity"], "o", color=col, ms=5)
        n = m["n_pos"] if m else 0
        ax.set_title(f"{SUBTYPE_TITLES.get(k, k)} (n={n})", fontsize=10)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def format_results(res: Dict) -> str:
    """Text table: per arm and sub-type the AUC [CI] and both operating points; then the comparison."""
    lines = [f"{'arm':<14}{'subtype':<9}{'pos/neg':>8}  {'AUC [95% CI]':<20}{'Youden sens/spec':<18}"
             f"{'@spec>=95% sens/spec':<20}"]
    for arm, r in res["arms"].items():
        for k, m in r["per_class"].items():
            if "note" in m:
                lines.append(f"{arm:<14}{k:<9}{m['n_pos']:>4}/{m['n_neg']:<3}  {m['note']}")
                continue
            y, s = m["youden"], m["spec95"]
            lines.append(f"{arm:<14}{k:<9}{m['n_pos']:>4}/{m['n_neg']:<3}  "
                         f"{m['auc']:.3f} [{m['ci_low']:.3f}-{m['ci_high']:.3f}]  "
                         f"{y['sensitivity']:.2f}/{y['specificity']:.2f}         "
                         f"{s['sensitivity']:.2f}/{s['specificity']:.2f}")
        lines.append(f"{arm:<14}accuracy {r['accuracy']:.3f} over {r['n_cases']} cases")
    for k, c in res.get("comparison", {}).items():
        if "p" in c:
            lines.append(f"DeLong {k}: ΔAUC {c['diff']:+.3f}, p = {c['p']:.3g}")
        else:
            lines.append(f"DeLong {k}: {c['note']}")
    lines.append(f"written to {res['output']}")
    return "\n".join(lines)
