"""Per-scan results in the layout of the Touchstone benchmark (github.com/MrGiovanni/Touchstone).

Touchstone publishes, per model, `dsc.csv` and `nsd.csv`: one row per scan, the first column
`name` (the case id), then one column per class in alphabetical order (its nine classes: aorta,
gall_bladder, kidney_left, kidney_right, liver, pancreas, postcava, spleen, stomach), `nan` where a
class is not scored. `write_touchstone` writes our scores in that layout (classes: the scored ones,
sorted as Touchstone sorts them).

The numbers are ours, which differ from Touchstone's own evaluation (`EvalCPU.py`) as follows:
- DSC: Touchstone computes 2|P∩G| / (|P| + |G| + 1). The +1 lowers every score (a perfect
  prediction of n voxels scores 2n / (2n + 1)) and makes an empty prediction of an empty class 0.
  Ours is 2|P∩G| / (|P| + |G|) (nnU-Net's), NaN when both are empty (left out of means; Touchstone
  leaves out only the (scan, class) pairs of its skip list, as NaN).
- NSD: Touchstone uses MONAI's `compute_surface_dice` with a 1.5 mm tolerance; ours equals it
  (see `metrics.normalized_surface_dice`), at the tolerance given (`suprem_evaluate --format
  touchstone` defaults to 1.5 mm).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Dict, List, Mapping

from ..dataset.raw import atomic_write_bytes

TOUCHSTONE_CLASSES = ("aorta", "gall_bladder", "kidney_left", "kidney_right", "liver", "pancreas", "postcava",
                      "spleen", "stomach")
TOUCHSTONE_TOLERANCE_MM = 1.5
FILES = {"dsc": "dsc.csv", "nsd": "nsd.csv"}


def _value(v) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def touchstone_tables(result: Mapping) -> Dict[str, str]:
    """{"dsc": csv text, "nsd": csv text} of an `evaluate_folders` result in Touchstone's layout."""
    classes = sorted(result["summary"])
    cases: List[str] = sorted({r["case"] for r in result["per_case"]})
    scores = {(r["case"], r["class"]): r for r in result["per_case"]}
    out = {}
    for metric in FILES:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", *classes])
        for case in cases:
            w.writerow([case, *(_value(scores[(case, c)][metric]) if (case, c) in scores else "nan" for c in classes)])
        out[metric] = buf.getvalue()
    return out


def write_touchstone(result: Mapping, out_dir: Path) -> List[Path]:
    """`dsc.csv` and `nsd.csv` in `out_dir` (each written atomically); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, text in touchstone_tables(result).items():
        atomic_write_bytes(out_dir / FILES[metric], text.encode())
        paths.append(out_dir / FILES[metric])
    return paths
