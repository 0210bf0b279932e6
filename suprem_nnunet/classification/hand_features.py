"""Hand-feature baseline: what a trivial model gets from the ROI's intensities alone.

Per case, from the voxels of its region of interest (the pancreas and its lesion, `Case.roi`) on
the classifier's own preprocessed grid, in HU (the CT window mapped back; values beyond the
window sit at its bounds): the 10th, 50th and 90th percentiles and the standard deviation.
Standardised (scikit-learn `StandardScaler`, fitted on the training cases) and fed to a
multinomial logistic regression (`LogisticRegression`, lbfgs, L2 with C = 1). Scores are the
regression's class probabilities, in `SUBTYPES` order; a class without a training case scores 0.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from .data import SUBTYPES
from .preprocess import Case
from ..errors import InputError

log = logging.getLogger(__name__)

FEATURES = ("p10", "p50", "p90", "sd")
ARM = "hand_features"  # the arm name its rows carry in experiment results


def roi_features(case: Case) -> np.ndarray:
    """(p10, p50, p90, sd) of the first channel's ROI voxels, in HU where the channel is windowed
    CT (else in the channel's own units); ValueError naming the case when it has no ROI."""
    if case.roi is None or not case.roi.any():
        raise InputError(f"{case.name}: no pancreas or lesion voxel in its label map; no ROI features")
    v = case.volume[0][case.roi].astype(np.float64)
    w = case.windows[0] if case.windows else None
    if w is not None:
        v = w[0] + v * (w[1] - w[0])
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return np.array([p10, p50, p90, v.std()])


@dataclass
class HandFeatureModel:
    """A fitted standardiser + logistic regression and the classes it was trained on."""

    pipeline: object
    classes: List[str]

    def predict_proba(self, cases: Sequence[Case]) -> np.ndarray:
        """(cases, len(SUBTYPES)) probabilities, columns in `SUBTYPES` order."""
        out = np.zeros((len(cases), len(SUBTYPES)))
        if not cases:
            return out
        p = self.pipeline.predict_proba(np.stack([roi_features(c) for c in cases]))
        for j, k in enumerate(self.classes):
            out[:, SUBTYPES.index(k)] = p[:, j]
        return out


def fit_hand_features(cases: Sequence[Case], labels: Sequence[str], seed: int = 0) -> HandFeatureModel:
    """Fit the baseline on `cases` with sub-types `labels`; ValueError when they hold one class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(labels)) < 2:
        raise InputError(f"hand-feature baseline: the training cases hold one class ({', '.join(set(labels))})")
    x = np.stack([roi_features(c) for c in cases])
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, random_state=seed))
    pipe.fit(x, np.asarray(labels))
    classes = [str(k) for k in pipe.classes_]
    log.info("hand-feature baseline on %d cases (%s)", len(cases), ", ".join(classes))
    return HandFeatureModel(pipe, classes)
