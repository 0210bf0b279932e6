"""Independent scorers: each turns the passes of one case into values per class.

A scorer has a `name` and `score(case) -> {class: {key: value}}`; the value under the scorer's own
name is its *component* in [0, 1] (higher = look here first), the other keys are details written to
the queue. Scorers do not know each other, the combination (`importance`) or the queue. Cohort
scorers (`VolumeScorer`) see every case's stored values instead of one case's passes.

An *expected* class is one the model should find in every case: every class of the probability
file's label space except lesions (`is_lesion`: the table's tumour group, or a novel name that says
tumour / lesion / cyst / nodule / cancer / metastasis), whose absence is the normal finding. A
missed organ is the error the review exists to catch, so each scorer states what it gives a class
predicted empty (no voxel with p̄ > ½) or nearly empty:

* uncertainty   ΣH(p̄) / (Σ[p̄ > ½] + ΣH(p̄)), sums over the voxels inside and around the predicted
                organ (p̄ > 0.05): binary entropy (bits) of the class's mean probability p̄ per voxel
                confidently predicted. A confident organ has entropy only in its boundary shell
                (small value); a faint or hesitant organ has entropy and few confident voxels (value
                near 1). Empty: 1 (no confident voxel); also when no voxel has p̄ > 0.05: an
                expected class predicted nowhere is a miss, not a confident prediction (a lesion
                class predicted nowhere: 0, a confident "no lesion").
* absence       for an expected class, 1 − min(1, 2·peak), peak = the largest p̄ of the class in the
                case: 1 when the model gives the class no probability anywhere (missed), about 0.3
                for a faint organ peaking at 0.35, 0 once any voxel reaches ½. 0 for lesions.
* inconsistency 1 − mean pairwise DSC of the class's argmax masks between passes (two empty masks
                agree); `voxel_sd` = mean standard deviation of p over passes inside the union
                of the masks. NaN with one pass. Empty in every pass: 0 (a consistent miss is found
                by absence, uncertainty and volume); empty in some passes only: high.
* implausibility max(overlap, fragmentation, wrong_side):
                overlap = share of the class's voxels (p̄ > 0.3) that another class also claims
                (p̄ > 0.3); fragmentation = 1 − largest 26-connected component / all voxels of the
                argmax mask; wrong_side = 1 when a `_left` class's centroid lies to the patient's
                right of its `_right` partner's (physical LPS x), else 0. Empty: 0 (no shape to
                judge; wrong_side needs both partners).
* volume        (cohort) min(1, |ln((v + ε) / median)| / ln 3), v the predicted volume in ml, the
                median over the scored cases of that class, ε = 1 % of it: an organ three times
                or a third of the usual size, or missing, scores 1. NaN with fewer than 3 cases or
                a median of 0 (then absence and uncertainty still put a missed organ first).
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping

import numpy as np
from scipy import ndimage

from ..labels import BY_NAME
from .probabilities import CasePasses

Scores = Dict[str, Dict[str, float]]  # class -> {key: value}
CLAIM = 0.3  # probability above which a class claims a voxel (overlap)
REGION = 0.05  # probability above which a voxel is inside or around the class (uncertainty)
CONFIDENT = 0.5  # probability above which a voxel is predicted as the class
LESION_WORDS = ("tumor", "tumour", "lesion", "cyst", "nodule", "cancer", "metasta")


def is_lesion(name: str) -> bool:
    """Whether a (canonical) class is a lesion, whose absence from a case is normal: the label table's
    tumour group; for a name outside the table, whether it contains a lesion word."""
    c = BY_NAME.get(name)
    if c is not None:
        return c.group == "tumor"
    return any(w in name for w in LESION_WORDS)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in bits, 0 at p = 0 or 1."""
    p = np.clip(p.astype(np.float32), 1e-6, 1 - 1e-6)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


class UncertaintyScorer:
    name = "uncertainty"

    def score(self, case: CasePasses) -> Scores:
        out = {}
        for i, c in enumerate(case.class_names):
            p = case.mean(i + 1)
            region = p > REGION
            h = float(binary_entropy(p[region]).sum())
            confident = float((p > CONFIDENT).sum())
            if confident > 0 or h > 0:
                value = h / (confident + h)  # 1 with entropy and no confident voxel (faint)
            else:  # predicted nowhere: a missed organ, or a lesion confidently absent
                value = 0.0 if is_lesion(c) else 1.0
            out[c] = {self.name: value}
        return out


class AbsenceScorer:
    """How completely an expected class is missing: 1 − min(1, 2·peak p̄); 0 for lesions."""

    name = "absence"

    def score(self, case: CasePasses) -> Scores:
        out = {}
        for i, c in enumerate(case.class_names):
            peak = float(case.mean(i + 1).max()) if case.passes.size else 0.0
            value = 0.0 if is_lesion(c) else 1.0 - min(1.0, peak / CONFIDENT)
            out[c] = {self.name: value, "peak_probability": peak}
        return out


class InconsistencyScorer:
    name = "inconsistency"

    def score(self, case: CasePasses) -> Scores:
        m = case.passes.shape[0]
        labels = [case.labels(k) for k in range(m)] if m > 1 else []
        out = {}
        for i, c in enumerate(case.class_names):
            if m < 2:
                out[c] = {self.name: float("nan"), "pairwise_dsc": float("nan"), "voxel_sd": float("nan")}
                continue
            masks = [lab == i + 1 for lab in labels]
            pair = [_dice(masks[a], masks[b]) for a in range(m) for b in range(a + 1, m)]
            union = np.logical_or.reduce(masks)
            sd = float(case.passes[:, i + 1][:, union].astype(np.float32).std(0).mean()) if union.any() else 0.0
            out[c] = {self.name: 1.0 - float(np.mean(pair)), "pairwise_dsc": float(np.mean(pair)), "voxel_sd": sd}
        return out


def centroid_lps(mask: np.ndarray, case: CasePasses) -> np.ndarray:
    """Physical (LPS, mm) centroid of a (z, y, x) mask on the case's grid."""
    idx_xyz = np.argwhere(mask).mean(0)[::-1]
    return case.origin + case.direction.reshape(3, 3) @ (case.spacing * idx_xyz)


class ImplausibilityScorer:
    name = "implausibility"

    def score(self, case: CasePasses) -> Scores:
        means = [case.mean(i + 1) for i in range(len(case.class_names))]
        claims = np.stack([p > CLAIM for p in means]) if means else np.zeros((0,), bool)
        n_claims = claims.sum(0) if means else None
        labels = case.mean_labels()
        out: Scores = {}
        masks = {}
        for i, c in enumerate(case.class_names):
            own = claims[i]
            overlap = float((own & (n_claims > 1)).sum() / own.sum()) if own.any() else 0.0
            mask = labels == i + 1
            masks[c] = mask
            frag = 0.0
            if mask.any():
                comp, n = ndimage.label(mask, np.ones((3, 3, 3), bool))
                if n > 1:
                    frag = 1.0 - float(np.bincount(comp.ravel())[1:].max()) / float(mask.sum())
            out[c] = {"overlap": overlap, "fragmentation": frag, "wrong_side": 0.0,
                      "volume_ml": float(mask.sum()) * case.voxel_ml}
        for c in case.class_names:
            if c.endswith("_left") and c[:-5] + "_right" in masks:
                r = c[:-5] + "_right"
                if masks[c].any() and masks[r].any():
                    wrong = float(centroid_lps(masks[c], case)[0] <= centroid_lps(masks[r], case)[0])
                    out[c]["wrong_side"] = out[r]["wrong_side"] = wrong  # LPS: +x is the patient's left
        for c, v in out.items():
            v[self.name] = max(v["overlap"], v["fragmentation"], v["wrong_side"])
        return out


class VolumeScorer:
    """Cohort scorer: reads each case's stored `volume_ml` (from ImplausibilityScorer)."""

    name = "volume"

    def score_cohort(self, stored: Mapping[str, Scores]) -> Dict[str, Scores]:
        classes = sorted({c for s in stored.values() for c in s})
        out: Dict[str, Scores] = {case: {} for case in stored}
        for c in classes:
            vols = {case: s[c]["volume_ml"] for case, s in stored.items() if c in s and "volume_ml" in s[c]}
            med = float(np.median(list(vols.values()))) if vols else 0.0
            for case, v in vols.items():
                if len(vols) < 3 or med <= 0:
                    val = float("nan")
                else:
                    val = min(1.0, abs(math.log((v + 0.01 * med) / med)) / math.log(3.0))
                out[case][c] = {self.name: val, "volume_median_ml": med}
        return out


CASE_SCORERS: List = [UncertaintyScorer(), AbsenceScorer(), InconsistencyScorer(), ImplausibilityScorer()]
COHORT_SCORERS: List = [VolumeScorer()]


def score_case(case: CasePasses, scorers=None) -> Scores:
    """Every case scorer's values for one case, merged per class."""
    merged: Scores = {c: {} for c in case.class_names}
    for s in scorers or CASE_SCORERS:
        for c, vals in s.score(case).items():
            merged[c].update(vals)
    return merged


def score_cohort(stored: Dict[str, Scores], scorers=None) -> Dict[str, Scores]:
    """`stored` ({case: scores}) with every cohort scorer's values merged in (in place; returned)."""
    for s in scorers or COHORT_SCORERS:
        for case, per_class in s.score_cohort(stored).items():
            for c, vals in per_class.items():
                stored[case].setdefault(c, {}).update(vals)
    return stored
