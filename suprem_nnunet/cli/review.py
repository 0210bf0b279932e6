"""suprem_review: the annotation flywheel — score predictions into a review queue, import revised labels."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .common import parser, run
from ..errors import InputError


def build_parser():
    p = parser("suprem_review", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="importance per (case, class) and per case: review_queue.csv, attention maps",
                       description="Score probabilities saved by suprem_predict --save-probabilities (one folder "
                                   "per model). With one folder, give --tta-model to add test-time-augmented passes.")
    s.add_argument("prob_dirs", nargs="*", help="folders of <case>.npz probability files, one per model")
    s.add_argument("-o", "--output", required=True, help="output folder (scores/, review_queue.csv, attention/)")
    s.add_argument("--images", default=None, help="the CT folder: attention previews over the CT "
                                                  "(and the input of --tta-model)")
    s.add_argument("--tta-model", default=None, help="model folder or checkpoint: write flipped passes of it "
                                                    "(OUTPUT/tta/) and score them with the given folders")
    s.add_argument("--device", default="cpu", help="device for --tta-model")
    s.add_argument("--backend", default="torch", choices=["torch", "compile", "openvino", "auto"],
                   help="CPU backend of --tta-model's network (as suprem_predict --backend)")
    s.add_argument("--no-attention", action="store_true", help="no attention NIfTI / preview")
    s.add_argument("--no-preview", action="store_true", help="no preview PNG")
    i = sub.add_parser("import", help="revised label maps replace the AI's in a raw dataset (versioned, reported)",
                       description="REVISED_DIR: <case>.nii.gz whole label maps or <case>/<class>.nii.gz masks; "
                                   "optional sidecars <case>.json / revision.json with reviewer, date, note, classes.")
    i.add_argument("revised_dir")
    i.add_argument("-d", "--dataset", required=True, help="dataset id or name in nnUNet_raw")
    i.add_argument("--reviewer", default=None, help="who revised (when no sidecar names one)")
    return p


def _main(args) -> int:
    from pathlib import Path

    if args.command == "score":
        from ..review.score import run_score

        dirs = list(args.prob_dirs)
        if not dirs and not args.tta_model:
            raise InputError("give probability folders (suprem_predict --save-probabilities) or --tta-model")
        if args.tta_model:
            from ..inference.backends import BackendConfig
            from ..review.tta import tta_passes

            if args.images is None:
                raise InputError("--tta-model needs --images (the CTs to predict)")
            dirs += [str(d) for d in tta_passes(args.tta_model, args.images, Path(args.output) / "tta", args.device,
                                                backend=BackendConfig(args.backend))]
        records = run_score(dirs, args.output, args.images, not args.no_attention, not args.no_preview)
        from ..review.queue import rank_cases

        for r in rank_cases(records)[:10]:
            print(f"{r['rank']:3d}  {r['case']}  importance {r['importance']:.3f}  (top: {r['top_class']} "
                  f"{r['top_class_importance']:.3f})")
        print(f"review queue: {Path(args.output) / 'review_queue.csv'}")
        return 0
    from ..review.revisions import format_report, import_revisions

    print(format_report(import_revisions(args.revised_dir, args.dataset, args.reviewer)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
