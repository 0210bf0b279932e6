"""Evaluate a folder of predictions against a folder of ground truths: DSC and NSD per case and class."""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
from tqdm import tqdm

from ..dataset.image_checks import check_label_values, geometry_difference, read_checked_image, rounded
from ..dataset.raw import atomic_write_bytes, atomic_write_json, read_annotated_classes
from ..dataset.cases import IMAGE_ENDINGS, cases_by_stem
from ..labels import ATLAS_IDS, canonical
from .class_matching import SidedTumours, format_mapping, match_classes
from .metrics import dice, normalized_surface_dice
from ..dataset.tumour_parts import SplitCache
from ..configs import as_config
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
OUTPUT_JSON = ("dataset.json", "metrics.json", "class_mapping.json")


def _images(folder: Path) -> Dict[str, Path]:
    """{full file stem: file} of a label or prediction folder (no channel suffix is stripped)."""
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder")
    return cases_by_stem([f for f in sorted(folder.iterdir())
                          if f.is_file() and f.name.lower().endswith(IMAGE_ENDINGS) and not f.name.startswith(".")])


def read_label_map(path: PathLike) -> Dict[str, int]:
    """{class name: label id} from a dataset.json, a prediction sidecar ({"labels": {...}}) or a flat
    {name: id} JSON file; background (id 0) left out."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such label map file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    labels = data.get("labels", data) if isinstance(data, dict) else None
    if not isinstance(labels, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                               for v in labels.values()):
        raise InputError(f"{path}: expected {{\"labels\": {{class name: integer id}}}} "
                         "(region labels are not supported)")
    return {str(k): int(v) for k, v in labels.items() if int(v) != 0}


def _sidecar_labels(pred_dir: Path, cases) -> Optional[Tuple[Dict[str, int], str]]:
    """The label map of released-model predictions (`<case>.json` sidecars, all identical), or None."""
    found: Optional[Tuple[Dict[str, int], Path]] = None
    for case in sorted(cases):
        f = pred_dir / f"{case}.json"
        if not f.is_file():
            continue
        labels = read_label_map(f)
        if found is None:
            found = (labels, f)
        elif labels != found[0]:
            raise InputError(f"{f}: label map differs from {found[1]} (one map per prediction folder)")
    return (found[0], f"{found[1]} (released-model sidecars)") if found else None


def model_label_map(pred_dir: Path, cases=(), pred_labels: Optional[Union[PathLike, Mapping[str, int]]] = None
                    ) -> Tuple[Dict[str, int], str]:
    """({class name: id} of the predictions, where it came from): `pred_labels` (a mapping or a file),
    else the prediction folder's dataset.json (written by suprem_predict), else the released-model
    sidecars, else AbdomenAtlas 1.1 ids (logged)."""
    if isinstance(pred_labels, Mapping):
        return dict(pred_labels), "given"
    if pred_labels is not None:
        return read_label_map(pred_labels), str(pred_labels)
    if (pred_dir / "dataset.json").is_file():
        return read_label_map(pred_dir / "dataset.json"), str(pred_dir / "dataset.json")
    side = _sidecar_labels(pred_dir, cases)
    if side is not None:
        return side
    log.warning("%s: no dataset.json or label sidecar; assuming AbdomenAtlas 1.1 label ids (pass --pred-labels "
                "to name them)", pred_dir)
    return dict(ATLAS_IDS), "assumed AbdomenAtlas 1.1 ids"


def gt_label_map(gt_dir: Path, gt_dataset_json: Optional[PathLike] = None) -> Optional[Tuple[Dict[str, int], str]]:
    """({class name: id} of the ground truth, source): `gt_dataset_json`, else dataset.json in the GT
    folder's parent or the GT folder; None when there is none."""
    if gt_dataset_json is not None:
        return read_label_map(gt_dataset_json), str(gt_dataset_json)
    for cand in (gt_dir.parent / "dataset.json", gt_dir / "dataset.json"):
        if cand.is_file():
            return read_label_map(cand), str(cand)
    return None


def _annotated(gt_dir: Path) -> Optional[Dict[str, set]]:
    """{case: canonical classes annotated} from annotated_classes.json next to the GT (partial labels)."""
    for folder in (gt_dir.parent, gt_dir):
        ann = read_annotated_classes(folder)
        if ann is not None:
            return {case: {canonical(n) for n in names} for case, names in ann.items()}
    return None


def _read(path: Path, ids, what: str):
    """(integer label array, image) of a whole 3D label map whose values are all in `ids`."""
    import SimpleITK as sitk

    img = read_checked_image(path, what)
    return check_label_values(path, sitk.GetArrayFromImage(img), ids), img


def _stats(values: List[float]) -> Dict[str, float]:
    v = np.array([x for x in values if not math.isnan(x)], float)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def _class_mask(labels: np.ndarray, ids, sided: Optional[SidedTumours], split: SplitCache) -> np.ndarray:
    """Voxels of one scored class: any of `ids`, plus the union-hosted tumour components assigned to its side."""
    mask = np.isin(labels, ids)
    if sided is not None:
        mask |= split.part_mask(sided.tumour_ids, sided.part_ids, sided.part_id)
    return mask


def _check_geometry(pred_file: Path, pimg, gt_file: Path, gimg) -> None:
    """ValueError unless both images share size, spacing, origin and direction."""
    diff = geometry_difference(pimg, gimg)
    if diff is not None:
        what, a, b = diff
        raise InputError(f"{pred_file}: {what} {rounded(a)} does not match the ground truth {gt_file} ({rounded(b)})")


@dataclass
class EvaluateConfig:
    """One evaluation (`evaluate`); the defaults are `evaluate_folders`' (out_dir None: nothing written)."""

    pred_dir: PathLike
    gt_dir: PathLike
    out_dir: Optional[PathLike] = None
    labels: Optional[Mapping[str, int]] = None
    tolerance_mm: float = 2.0
    dataset_json: Optional[PathLike] = None
    pred_labels: Optional[Union[PathLike, Mapping[str, int]]] = None
    gt_dataset_json: Optional[PathLike] = None
    skip_bad: bool = False


def evaluate(config: Union[EvaluateConfig, PathLike], *args, **kwargs) -> Dict:
    """Score a folder of predictions against the ground truth (`evaluate_folders`) as the config
    says; takes an EvaluateConfig, or its fields as arguments. Returns the result dict."""
    cfg = as_config(EvaluateConfig, config, args, kwargs)
    return evaluate_folders(cfg.pred_dir, cfg.gt_dir, cfg.out_dir, cfg.labels, cfg.tolerance_mm, cfg.dataset_json,
                            pred_labels=cfg.pred_labels, gt_dataset_json=cfg.gt_dataset_json, skip_bad=cfg.skip_bad)


def evaluate_folders(pred_dir: PathLike, gt_dir: PathLike, out_dir: Optional[PathLike] = None,
                     labels: Optional[Mapping[str, int]] = None, tolerance_mm: float = 2.0,
                     dataset_json: Optional[PathLike] = None, *,
                     pred_labels: Optional[Union[PathLike, Mapping[str, int]]] = None,
                     gt_dataset_json: Optional[PathLike] = None, skip_bad: bool = False) -> Dict:
    """DSC and NSD for every GT case and every GT class the model predicts (matched by name);
    writes `metrics.csv`, `metrics.json` and `class_mapping.json` to `out_dir`.

    Label maps: the model's from `pred_labels` / the prediction folder (see `model_label_map`), the
    GT's from `gt_dataset_json` / next to the GT folder (see `gt_label_map`; without one the GT is
    taken to use the model's ids). `labels` ({name: id}) or `dataset_json` name both at once.
    Classes are matched by `class_matching.match_classes`; GT classes the model cannot predict are
    listed under 'not_predicted', not scored. Tumours hosted by a union organ are split between its
    scored parts by location (`dataset.tumour_parts.split_by_part`). With annotated_classes.json next to the GT, a (case,
    class) pair the case does not annotate is skipped. Every GT case needs a prediction on the same
    grid (size, spacing, origin, direction). Returns {'per_case': [...], 'summary': {class: {'dsc':
    {mean, sd, n}, 'nsd': {...}}}, 'mean': ..., 'class_mapping': ..., ...}; NaN scores (both masks
    empty) are left out of means and counts. A case whose files are unreadable, broken, on
    another grid or hold values outside their label map raises ValueError naming the file; with
    `skip_bad` it is left out and listed under 'skipped_cases' instead (so is a missing prediction).
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    preds, gts = _images(pred_dir), _images(gt_dir)
    if not gts:
        raise MissingFileError(f"{gt_dir}: no ground-truth images")
    missing = sorted(set(gts) - set(preds))
    skipped_cases = [{"case": c, "problem": f"{pred_dir}: no prediction"} for c in missing] if skip_bad else []
    if missing and not skip_bad:
        raise MissingFileError(f"{pred_dir}: no prediction for {len(missing)} case(s): {', '.join(missing[:5])}")
    both = labels if labels is not None else (read_label_map(dataset_json) if dataset_json else None)
    model_labels, model_src = model_label_map(pred_dir, gts, pred_labels if pred_labels is not None else both)
    if gt_dataset_json is None and both is not None:
        found: Optional[Tuple[Dict[str, int], str]] = (dict(both), "given")
    else:
        found = gt_label_map(gt_dir, gt_dataset_json)
    if found is None:
        log.warning("%s: no dataset.json next to the ground truth; assuming it uses the model's label ids", gt_dir)
        found = (dict(model_labels), "the model's label map (no GT dataset.json)")
    gt_labels, gt_src = found
    mapping = match_classes(model_labels, gt_labels)
    mapping_json = {"model_labels": model_src, "gt_labels": gt_src, **mapping.to_json()}
    log.debug("%s", format_mapping(mapping_json))
    if not mapping.scored:
        raise InputError(f"{gt_dir}: none of the ground-truth classes ({', '.join(mapping.not_predicted)}) is "
                         f"predicted by the model ({', '.join(model_labels)}, from {model_src})")
    annotated = _annotated(gt_dir)
    rows: List[Dict] = []
    skipped = 0
    for case in tqdm(sorted(set(gts) - set(missing)), desc="evaluating"):
        try:
            p, pimg = _read(preds[case], [0, *model_labels.values()], "prediction")
            g, gimg = _read(gts[case], [0, *gt_labels.values()], "ground truth")
            _check_geometry(preds[case], pimg, gts[case], gimg)
        except (ValueError, FileNotFoundError) as e:
            if not skip_bad:
                raise
            skipped_cases.append({"case": case, "problem": str(e)})
            log.warning("skipped case %s: %s", case, e)
            continue
        spacing = gimg.GetSpacing()[::-1]
        p_split, g_split = SplitCache(p, spacing), SplitCache(g, spacing)
        for m in mapping.scored:
            if annotated is not None and case in annotated and m.gt_class not in annotated[case]:
                skipped += 1
                continue
            pm, gm = _class_mask(p, m.pred_ids, m.pred_sided, p_split), _class_mask(g, m.gt_ids, m.gt_sided, g_split)
            rows.append({"case": case, "class": m.gt_class, "dsc": dice(pm, gm),
                         "nsd": normalized_surface_dice(pm, gm, spacing, tolerance_mm),
                         "gt_voxels": int(gm.sum()), "pred_voxels": int(pm.sum())})
    names = [m.gt_class for m in mapping.scored]
    summary = {name: {m: _stats([r[m] for r in rows if r["class"] == name]) for m in ("dsc", "nsd")}
               for name in names}
    result = {"pred_dir": str(pred_dir), "gt_dir": str(gt_dir), "tolerance_mm": tolerance_mm,
              "labels": {canonical(n): i for n, i in gt_labels.items()},
              "pred_labels": {canonical(n): i for n, i in model_labels.items()},
              "class_mapping": mapping_json, "not_predicted": mapping.not_predicted,
              "skipped_unannotated": skipped, "skipped_cases": skipped_cases, "summary": summary,
              "mean": {m: _stats([s[m]["mean"] for s in summary.values()]) for m in ("dsc", "nsd")},
              "per_case": rows}
    if out_dir is not None:
        write_results(result, Path(out_dir))
    return result


def write_results(result: Dict, out_dir: Path) -> None:
    """`metrics.json` (everything), `metrics.csv` (one row per case and class) and `class_mapping.json`, atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "metrics.json", json.loads(json.dumps(result, default=float)))
    atomic_write_json(out_dir / "class_mapping.json", result["class_mapping"])
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
    if result.get("not_predicted"):
        lines.append(f"{'not predicted (not scored)':<28} {', '.join(result['not_predicted'])}")
    for s in result.get("skipped_cases", []):
        lines.append(f"{'skipped (--skip-bad)':<28} {s['case']}: {s['problem']}")
    m = result["mean"]
    lines.append(f"{'mean over classes':<28} {m['dsc']['mean']:>7.3f} ± {m['dsc']['sd']:<6.3f} "
                 f"{m['nsd']['mean']:>7.3f} ± {m['nsd']['sd']:<6.3f}")
    return "\n".join(lines)
