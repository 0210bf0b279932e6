"""Evaluate a folder of predictions against a folder of ground truths: DSC and NSD per case and class."""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import numpy as np
from tqdm import tqdm

from ..dataset.raw import atomic_write_bytes, atomic_write_json, label_names
from ..inference.predict import IMAGE_ENDINGS, case_name
from .metrics import dice, normalized_surface_dice

log = logging.getLogger(__name__)


def _images(folder: Path) -> Dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return {case_name(f): f for f in sorted(folder.iterdir())
            if f.is_file() and f.name.lower().endswith(IMAGE_ENDINGS) and not f.name.startswith(".")}


def find_labels(pred_dir: Path, gt_dir: Path, dataset_json: Optional[Path]) -> Dict[str, int]:
    """{class name: label id} from an explicit dataset.json, the prediction folder's, or the GT's parent."""
    for cand in (dataset_json, pred_dir / "dataset.json", gt_dir.parent / "dataset.json", gt_dir / "dataset.json"):
        if cand is not None and Path(cand).is_file():
            dj = json.loads(Path(cand).read_text())
            return {n: i + 1 for i, n in enumerate(label_names(dj))}
    raise FileNotFoundError(f"no dataset.json naming the labels in {pred_dir} or next to {gt_dir}; "
                            "pass --dataset-json")


def _read(path: Path):
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ValueError(f"{path}: cannot be read ({str(e).strip().splitlines()[-1][:120]})") from None
    return sitk.GetArrayFromImage(img), img


def _stats(values: List[float]) -> Dict[str, float]:
    v = np.array([x for x in values if not math.isnan(x)], float)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def evaluate_folders(pred_dir: Union[str, Path], gt_dir: Union[str, Path], out_dir: Optional[Union[str, Path]] = None,
                     labels: Optional[Mapping[str, int]] = None, tolerance_mm: float = 2.0,
                     dataset_json: Optional[Union[str, Path]] = None) -> Dict:
    """DSC and NSD for every GT case and class; writes `metrics.csv` and `metrics.json` to `out_dir`.

    Every GT case needs a prediction with the same grid (shape, spacing, origin). Returns
    {'per_case': [...], 'summary': {class: {'dsc': {mean, sd, n}, 'nsd': {...}}}, ...}.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    labels = dict(labels or find_labels(pred_dir, gt_dir, Path(dataset_json) if dataset_json else None))
    preds, gts = _images(pred_dir), _images(gt_dir)
    if not gts:
        raise FileNotFoundError(f"{gt_dir}: no ground-truth images")
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise FileNotFoundError(f"{pred_dir}: no prediction for {len(missing)} case(s): {', '.join(missing[:5])}")
    rows: List[Dict] = []
    for case in tqdm(sorted(gts), desc="evaluating"):
        p, pimg = _read(preds[case])
        g, gimg = _read(gts[case])
        if p.shape != g.shape or not np.allclose(pimg.GetSpacing(), gimg.GetSpacing(), atol=1e-4) \
                or not np.allclose(pimg.GetOrigin(), gimg.GetOrigin(), atol=1e-3):
            raise ValueError(f"{preds[case]}: geometry {p.shape[::-1]} @ {pimg.GetSpacing()} does not match the "
                             f"ground truth {gts[case]} ({g.shape[::-1]} @ {gimg.GetSpacing()})")
        spacing = gimg.GetSpacing()[::-1]
        for name, lid in labels.items():
            pm, gm = p == lid, g == lid
            rows.append({"case": case, "class": name, "dsc": dice(pm, gm),
                         "nsd": normalized_surface_dice(pm, gm, spacing, tolerance_mm),
                         "gt_voxels": int(gm.sum()), "pred_voxels": int(pm.sum())})
    summary = {name: {m: _stats([r[m] for r in rows if r["class"] == name]) for m in ("dsc", "nsd")}
               for name in labels}
    result = {"pred_dir": str(pred_dir), "gt_dir": str(gt_dir), "tolerance_mm": tolerance_mm, "labels": labels,
              "summary": summary,
              "mean": {m: _stats([s[m]["mean"] for s in summary.values()]) for m in ("dsc", "nsd")},
              "per_case": rows}
    if out_dir is not None:
        write_results(result, Path(out_dir))
    return result


def write_results(result: Dict, out_dir: Path) -> None:
    """`metrics.json` (everything) and `metrics.csv` (one row per case and class), atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "metrics.json", json.loads(json.dumps(result, default=float)))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["case", "class", "dsc", "nsd", "gt_voxels", "pred_voxels"])
    w.writeheader()
    for r in result["per_case"]:
        w.writerow(r)
    atomic_write_bytes(out_dir / "metrics.csv", buf.getvalue().encode())


def format_summary(result: Dict) -> str:
    """Per-class mean ± sd table as text."""
    lines = [f"{'class':<28} {'DSC mean ± sd':>16} {'NSD mean ± sd':>16} {'n':>4}"]
    for name, s in result["summary"].items():
        d, n = s["dsc"], s["nsd"]
        lines.append(f"{name:<28} {d['mean']:>7.3f} ± {d['sd']:<6.3f} {n['mean']:>7.3f} ± {n['sd']:<6.3f} {d['n']:>4}")
    m = result["mean"]
    lines.append(f"{'mean over classes':<28} {m['dsc']['mean']:>7.3f} ± {m['dsc']['sd']:<6.3f} "
                 f"{m['nsd']['mean']:>7.3f} ± {m['nsd']['sd']:<6.3f}")
    return "\n".join(lines)
