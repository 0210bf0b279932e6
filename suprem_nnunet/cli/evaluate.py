"""suprem_evaluate: DSC and NSD per case and class, mean ± sd summary, CSV + JSON."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .common import parser, run


def build_parser():
    p = parser("suprem_evaluate", __doc__)
    p.add_argument("pred_dir", help="folder of predicted label maps")
    p.add_argument("gt_dir", help="folder of ground-truth label maps (same case names)")
    p.add_argument("-o", "--output", default=None, help="where to write metrics.csv / metrics.json (default: PRED_DIR)")
    p.add_argument("--tolerance", type=float, default=2.0, help="NSD surface tolerance in mm")
    p.add_argument("--pred-labels", default=None,
                   help="JSON naming the prediction's label ids (dataset.json, sidecar or {name: id}); default: "
                        "PRED_DIR/dataset.json, else released-model sidecars, else AbdomenAtlas 1.1 ids")
    p.add_argument("--gt-dataset-json", default=None,
                   help="dataset.json naming the ground truth's labels (default: next to GT_DIR)")
    p.add_argument("--dataset-json", default=None,
                   help="one dataset.json naming the labels of both folders (when they share ids)")
    return p


def _main(args) -> int:
    from ..evaluation.class_matching import format_mapping
    from ..evaluation.evaluate import evaluate_folders, format_summary

    if args.tolerance < 0:
        raise ValueError(f"--tolerance must be >= 0 mm, got {args.tolerance}")
    result = evaluate_folders(args.pred_dir, args.gt_dir, args.output or args.pred_dir,
                              tolerance_mm=args.tolerance, dataset_json=args.dataset_json,
                              pred_labels=args.pred_labels, gt_dataset_json=args.gt_dataset_json)
    print(format_mapping(result["class_mapping"]))
    print(format_summary(result))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
