"""Did an arm finish learning? The learning curves of a protocol's runs (curves.csv: nnU-Net's
online validation pseudo-DSC per epoch) say whether the comparison was made where both arms had
learned: an arm is on a plateau when its mean curve (over trials) rose less than `PLATEAU_RISE`
from the second-to-last quarter of its epochs to the last (the means of the raw per-epoch values
over each quarter; nnU-Net's EMA lags by about ten epochs and would call a finished arm rising)."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .figures import curve_plot

#: rise of the mean validation EMA DSC over the last quarter of the epochs below which an arm counts
#: as having stopped learning
PLATEAU_RISE = 0.02


def mean_curve(curves: Sequence[Dict], arm: str, setting: Optional[str] = None, key: str = "val_dsc") -> List[float]:
    """Per epoch, the mean over trials of the arm's validation DSC (`key`: val_dsc, or val_dsc_ema),
    over the epochs all trials reached."""
    by: Dict[int, Dict[int, float]] = defaultdict(dict)
    for c in curves:
        if c["arm"] == arm and (setting is None or c["setting"] == setting):
            by[c["trial"]][int(c["epoch"])] = float(c[key])
    if not by:
        return []
    n = min(max(v) for v in by.values())
    return [float(np.mean([by[t][e] for t in by if e in by[t]])) for e in range(1, n + 1)]


def plateau(curve: Sequence[float]) -> Dict:
    """{'epochs', 'final' (mean of the last quarter), 'rise' (that minus the mean of the quarter
    before), 'plateau'}; rise NaN with fewer than 8 epochs."""
    n = len(curve)
    q = n // 4
    if n < 8:
        return {"epochs": n, "final": float(np.mean(curve[-2:])) if n else float("nan"), "rise": float("nan"),
                "plateau": False}
    last, before = float(np.mean(curve[n - q:])), float(np.mean(curve[n - 2 * q:n - q]))
    return {"epochs": n, "final": last, "rise": last - before, "plateau": last - before < PLATEAU_RISE}


def plateau_section(curves: Sequence[Dict], arms: Sequence[str], setting: Optional[str], png: Path,
                    title: str) -> List[str]:
    """Markdown lines: per arm the final validation DSC and its rise over the last quarter of the
    epochs (at `setting`, e.g. the largest few-shot size), and a PNG of the curves per trial."""
    rows, plot = [], {}
    for a in arms:
        curve = mean_curve(curves, a, setting)
        if not curve:
            continue
        p = plateau(curve)
        state = "n/a (< 8 epochs)" if math.isnan(p["rise"]) else ("plateau" if p["plateau"] else "still rising")
        rise = "n/a" if math.isnan(p["rise"]) else f"{p['rise']:+.3f}"
        rows.append(f"| {a} | {p['epochs']} | {p['final']:.3f} | {rise} | {state} |")
        per_trial = defaultdict(list)
        for c in curves:
            if c["arm"] == a and (setting is None or c["setting"] == setting):
                per_trial[c["trial"]].append((int(c["epoch"]), float(c["val_dsc"])))
        plot[a] = [([e for e, _ in sorted(v)], [d for _, d in sorted(v)]) for _, v in sorted(per_trial.items())]
    if not rows:
        return []
    curve_plot(plot, png, None, title, xlabel="epoch", ylabel="validation pseudo-DSC")
    where = f" at {setting}" if setting is not None else ""
    return ["### Learning curves" + where, "",
            "Validation pseudo-DSC per epoch (nnU-Net's online foreground Dice on the held-out training "
            "cases, 2 batches an epoch), mean over trials. Final: the mean over the last quarter of the epochs; "
            f"rise: that minus the mean over the quarter before. An arm is on a plateau when it rose less than "
            f"{PLATEAU_RISE}.", "",
            "| arm | epochs | final val DSC (last quarter) | rise from the quarter before | |", "|---|---|---|---|---|",
            *rows, "", f"![learning curves]({png.name})", ""]
