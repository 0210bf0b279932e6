"""One run of a classification protocol (design `classification`, the paper's Fig 3): train the
sub-type classifier on the target's training cases (the pre-trained encoder, or the same network
from scratch), score the target's test cases and return one row per (test case, sub-type)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict

from .. import paths
from .execute import Context, RunSpec, pretrained_weights, seed_everything

CASE_LABELS = "case_labels.csv"


def run_classification(ctx: Context, spec: RunSpec, folder: Path) -> Dict:
    """Train, predict and score one run; rows: case, class (sub-type), truth (1: the case is of that
    sub-type), score (the classifier's softmax score). The ROI of a test case is its label map
    (pancreas and lesion), as `suprem_classify predict --roi-labels` takes it."""
    from ..classification.data import read_case_labels
    from ..classification.evaluate import read_scores
    from ..classification.train import predict_folder, train_classifier
    from ..training.run import resolve_device

    target = ctx.datasets[spec.target]
    raw = paths.raw_root() / target.name
    weights, pre_info = pretrained_weights(ctx, spec.source, spec.pretrain_cases)
    device = resolve_device(ctx.device)
    t = time.time()
    seed_everything(spec.seed)
    model = train_classifier(target.name, weights, from_scratch=spec.init == "scratch", num_train_cases=spec.num_train,
                             seed=spec.seed, budget=ctx.scale.budget.training_budget(), output=folder / "model",
                             device=device)
    train_s = time.time() - t
    scores_csv = predict_folder(raw / "imagesTs", model, folder / "scores.csv", raw / "labelsTs", device)
    labels = read_case_labels(raw / CASE_LABELS)
    classes, scores, _ = read_scores(scores_csv)
    rows = [{"case": case, "class": k, "truth": int(labels[case] == k), "score": float(s[i])}
            for case, s in sorted(scores.items()) for i, k in enumerate(classes)]
    return {"rows": rows, "curve": [], "train_seconds": round(train_s, 1), "seconds": round(time.time() - t, 1),
            "pretraining": pre_info, "target": target.name}
