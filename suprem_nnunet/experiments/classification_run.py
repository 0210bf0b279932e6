"""One run of a classification protocol (design `classification`, the paper's Fig 3): train the
sub-type classifier on the target's training cases (the pre-trained encoder, or the same network
from scratch), score the target's test cases and return one row per (test case, sub-type).

Region of interest of a test case (`classification.preprocess`: the pancreas and its lesion):
  * the run's arm (`<arm>`): the label map the pre-trained segmentation model (the arm's pre-training
    `source`, for the scratch arm too) predicts for the test case; predicted once per pre-training
    and target, cached beside the pre-training (`<cache>/<key>/roi/<target>/`, with `roi.json`: the
    ROI's Dice against the ground truth per case);
  * `<arm> (oracle ROI)`: the case's ground-truth label map, an upper bound no deployed model has.
A case whose predicted ROI is empty is not scored in that arm: it is logged (one line), listed in
the run's `result.json` (`empty_roi`) and has no rows there.

The baseline arm's run also fits the hand-feature baseline (`classification.hand_features`: ROI
intensity percentiles + sd, logistic regression) on the same training cases and scores the same
test cases with both ROIs: rows of arms `hand_features` and `hand_features (oracle ROI)`. Each row
names its arm (`arm`), so the runner files it under that arm.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Dict, List, Mapping

import numpy as np

from .. import paths
from ..dataset.raw import atomic_write_json
from ..locking import file_lock
from ..seeding import seed_everything
from .execute import Context, RunSpec, _predict, pretrained_weights, pretraining_key
from ..classification.preprocess import roi_label_ids, preprocess_cases
from ..classification.data import SUBTYPES, case_images, read_case_labels
from ..classification.hand_features import ARM as HAND, fit_hand_features
from ..classification.train import predict_scores, roi_files, train_classifier, training_set
from ..training.run import resolve_device
from ..errors import InputError

log = logging.getLogger(__name__)

CASE_LABELS = "case_labels.csv"
ORACLE = " (oracle ROI)"  # suffix of the arms scored inside the ground-truth label maps


def roi_cache(ctx: Context, spec: RunSpec) -> Path:
    """The folder of the predicted ROIs of `spec`'s target by `spec`'s pre-training."""
    pre = ctx.scale.pretraining(spec.source)
    key = f"zoo_{pre.zoo}" if pre.zoo is not None else pretraining_key(ctx, pre, spec.pretrain_cases)
    return ctx.cache / key / "roi" / ctx.datasets[spec.target].name


def roi_dice(pred_dir: Path, truth_dir: Path, cases: List[str]) -> Dict[str, float]:
    """Per case: Dice of the predicted ROI (pancreas + lesion classes) against the ground truth's."""
    import SimpleITK as sitk


    out = {}
    for c in cases:
        p, t = pred_dir / f"{c}.nii.gz", truth_dir / f"{c}.nii.gz"
        if not (p.is_file() and t.is_file()):
            continue
        a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(f))) for f in (p, t))
        ia, ib = roi_label_ids(str(p)), roi_label_ids(str(t))
        ma = np.isin(a, sorted(ia)) if ia else a > 0
        mb = np.isin(b, sorted(ib)) if ib else b > 0
        denom = ma.sum() + mb.sum()
        out[c] = float(2 * (ma & mb).sum() / denom) if denom else float("nan")
    return out


def predicted_roi(ctx: Context, spec: RunSpec, weights: str, device: str) -> Path:
    """The folder of label maps the pre-trained model predicts for the target's test cases
    (predicted on first use into a temporary folder, then renamed; `roi.json` written last; runs in
    parallel take turns through a lock file)."""
    folder = roi_cache(ctx, spec)
    with file_lock(folder.with_name(folder.name + ".lock")):
        if not (folder / "roi.json").is_file():
            _predict_roi(ctx, spec, weights, device, folder)
    return folder


def _predict_roi(ctx: Context, spec: RunSpec, weights: str, device: str, folder: Path) -> None:
    raw = paths.raw_root() / ctx.datasets[spec.target].name
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    t = time.time()
    _predict(weights, raw / "imagesTs", tmp, device, ctx.mirroring)
    tmp.rename(folder)
    cases = sorted(p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz"))
    dice = roi_dice(folder, raw / "labelsTs", cases)
    atomic_write_json(folder / "roi.json", {"model": weights, "seconds": round(time.time() - t, 1),
                                            "dice": dice, "mean_dice": float(np.nanmean(list(dice.values())))
                                            if dice else None})
    log.info("ROI of %d test cases predicted by %s: mean Dice %.3f vs the ground truth", len(cases), weights,
             float(np.nanmean(list(dice.values()))) if dice else float("nan"))


def _rows(arm: str, classes: List[str], scores: Mapping[str, np.ndarray], labels: Mapping[str, str]) -> List[Dict]:
    return [{"arm": arm, "case": case, "class": k, "truth": int(labels[case] == k), "score": float(s[i])}
            for case, s in sorted(scores.items()) for i, k in enumerate(classes)]


def check_test_labels(labels_file: Path, labels: Mapping[str, str], cases: List[str]) -> None:
    """ValueError naming the labels file when a test case has no sub-type there."""
    missing = sorted(c for c in cases if c not in labels)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(f"{labels_file}: {len(missing)} test case(s) without a sub-type: "
                         f"{', '.join(missing[:5])}{more}")


def run_classification(ctx: Context, spec: RunSpec, folder: Path) -> Dict:
    """Train, predict and score one run; rows: arm, case, class (sub-type), truth (1: the case is of
    that sub-type), score (softmax score, or the baseline's probability); see the module docstring."""

    target = ctx.datasets[spec.target]
    raw = paths.raw_root() / target.name
    labels_file = raw / CASE_LABELS
    weights, pre_info = pretrained_weights(ctx, spec.source, spec.pretrain_cases)
    device = resolve_device(ctx.device)
    labels = read_case_labels(labels_file)
    images = case_images(raw / "imagesTs")
    check_test_labels(labels_file, labels, sorted(images))
    seed = ctx.seed + spec.seed
    t = time.time()
    data = training_set(target.name, weights, spec.num_train, seed, labels_file)
    seed_everything(seed)
    model = train_classifier(target.name, weights, from_scratch=spec.init == "scratch", num_train_cases=spec.num_train,
                             seed=seed, budget=ctx.scale.budget.training_budget(), output=folder / "model",
                             device=device, labels_file=labels_file, data=data)
    train_s = time.time() - t
    rois = {"": predicted_roi(ctx, spec, weights, str(device)), ORACLE: raw / "labelsTs"}
    rows: List[Dict] = []
    empty: Dict[str, List[str]] = {}
    for suffix, roi in rois.items():
        res = predict_scores(images, model, roi, device)
        rows += _rows(spec.arm + suffix, res.classes, res.scores, labels)
        if res.unscored:
            empty[spec.arm + suffix] = res.unscored
    if spec.arm == ctx.scale.baseline:  # the hand-feature baseline: once per trial, on the same cases
        hand = fit_hand_features(data.cases, [data.labels[c] for c in data.chosen], seed)
        for suffix, roi in rois.items():
            cases = preprocess_cases(data.preprocessor, images, roi_files(images, roi))
            scored = [c for c in cases if c.roi is not None]
            if len(scored) < len(cases):
                empty[HAND + suffix] = [c.name for c in cases if c.roi is None]
            p = hand.predict_proba(scored)
            rows += _rows(HAND + suffix, list(SUBTYPES), {c.name: p[i] for i, c in enumerate(scored)}, labels)
    for arm, cases in empty.items():
        log.warning("%s, trial %d: %d test case(s) with an empty ROI, not scored: %s", arm, spec.trial,
                    len(cases), ", ".join(cases))
    roi_info = json.loads((rois[""] / "roi.json").read_text())
    return {"rows": rows, "curve": [], "train_seconds": round(train_s, 1), "seconds": round(time.time() - t, 1),
            "pretraining": pre_info, "target": target.name, "empty_roi": empty,
            "roi_mean_dice": roi_info.get("mean_dice")}
