"""suprem_evaluate: DSC and NSD per case and class, mean ± sd summary, CSV + JSON."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from .common import parser, run
from ..errors import InputError


def build_parser():
    p = parser("suprem_evaluate", __doc__)
    p.add_argument("pred_dir", nargs="?", help="folder of predicted label maps")
    p.add_argument("gt_dir", nargs="?", help="folder of ground-truth label maps (same case names)")
    p.add_argument("-o", "--output", default=None, help="where to write metrics.csv / metrics.json (default: PRED_DIR)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="NSD surface tolerance in mm (default 2.0; 1.5 with --format touchstone)")
    p.add_argument("--format", default="suprem", choices=["suprem", "touchstone"],
                   help="touchstone: also write dsc.csv and nsd.csv in the Touchstone benchmark's per-scan layout "
                        "(our DSC: no +1 in the denominator, NaN when both masks are empty; see "
                        "evaluation/touchstone.py)"),
    p.add_argument("--pred-labels", default=None,
                   help="JSON naming the prediction's label ids (dataset.json, sidecar or {name: id}); default: "
                        "PRED_DIR/dataset.json, else released-model sidecars, else AbdomenAtlas 1.1 ids")
    p.add_argument("--gt-dataset-json", default=None,
                   help="dataset.json naming the ground truth's labels (default: next to GT_DIR)")
    p.add_argument("--dataset-json", default=None,
                   help="one dataset.json naming the labels of both folders (when they share ids)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip cases whose prediction or ground truth is unreadable or broken (listed in the "
                        "summary and in metrics.json) instead of stopping at the first")
    p.add_argument("--classification", nargs=2, metavar=("SCORES", "LABELS"), default=None,
                   help="instead: evaluate sub-type scores (scores.csv of suprem_classify) against case labels: "
                        "one-vs-rest ROC, AUC with DeLong 95%% CI, Youden and 95%%-specificity points, confusion "
                        "matrix, roc.png (into -o, default: next to SCORES)")
    p.add_argument("--baseline-scores", default=None, metavar="SCORES",
                   help="with --classification: a second arm (e.g. from scratch) drawn on the same ROC plots and "
                        "compared by DeLong's paired test")
    p.add_argument("--arm-names", default="pre-trained,scratch", help="with --classification: names of the two arms")
    return p


def _main(args) -> int:
    if args.classification:
        from ..classification.evaluate import evaluate_arms, format_results

        scores, labels = args.classification
        names = [n.strip() for n in args.arm_names.split(",")]
        if len(names) != 2 or not all(names) or names[0] == names[1]:
            raise InputError(f"--arm-names needs two different names separated by a comma, got {args.arm_names!r}")
        arms = {names[0]: scores, **({names[1]: args.baseline_scores} if args.baseline_scores else {})}
        print(format_results(evaluate_arms(arms, labels, args.output or Path(scores).parent)))
        return 0
    if args.pred_dir is None or args.gt_dir is None:
        raise InputError("give PRED_DIR and GT_DIR (segmentation) or --classification SCORES LABELS")
    from ..evaluation.class_matching import format_mapping
    from ..evaluation.evaluate import EvaluateConfig, evaluate, format_summary

    from ..evaluation.touchstone import TOUCHSTONE_TOLERANCE_MM, write_touchstone

    if args.tolerance is None:
        args.tolerance = TOUCHSTONE_TOLERANCE_MM if args.format == "touchstone" else 2.0
    if args.tolerance < 0:
        raise InputError(f"--tolerance must be >= 0 mm, got {args.tolerance}")
    result = evaluate(EvaluateConfig(args.pred_dir, args.gt_dir, args.output or args.pred_dir,
                                     tolerance_mm=args.tolerance, dataset_json=args.dataset_json,
                                     pred_labels=args.pred_labels, gt_dataset_json=args.gt_dataset_json,
                                     skip_bad=args.skip_bad))
    print(format_mapping(result["class_mapping"]))
    print(format_summary(result))
    if args.format == "touchstone":
        for f in write_touchstone(result, Path(args.output or args.pred_dir)):
            print(f)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
