"""suprem_classify: pancreatic tumour sub-type classification from a pre-trained segmentation encoder.

  suprem_classify train TASK --pretrained CKPT [--from-scratch] [--num-train-cases N --seed S ...]
  suprem_classify predict -i IMAGES -m MODEL -o scores.csv --roi-labels LABELS  (pancreas masks, e.g. suprem_predict)
  suprem_classify from-probabilities PROBS_DIR -o scores.csv   (the segmentation-derived route)
  suprem_classify make-phantoms -d ID [--difficulty 0.5]        (a phantom dataset with case_labels.csv)

Evaluate with `suprem_evaluate --classification scores.csv case_labels.csv`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from .common import add_backend_args, float_triple, int_triple, parser, positive_int, run
from .train import add_budget_args, budget_from
from ..errors import InputError


def _difficulty(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def build_parser():
    p = parser("suprem_classify", __doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune a classifier on a dataset's case_labels.csv")
    t.add_argument("task", help="dataset: id, name or DatasetNNN_Name (imagesTr + case_labels.csv)")
    t.add_argument("--pretrained", nargs="?", const="latest", default="latest", metavar="CKPT",
                   help="segmentation checkpoint, model folder or zoo name whose encoder to start from (also "
                        "gives the plans with --from-scratch); bare --pretrained: the most recent pre-training")
    t.add_argument("--from-scratch", action="store_true",
                   help="baseline: same plans, network, data and budget, random initial weights")
    t.add_argument("--labels", default=None, help="case labels CSV (default: RAW/case_labels.csv)")
    t.add_argument("--num-train-cases", type=positive_int, default=None,
                   help="seeded few-shot subset size (stratified by sub-type)")
    t.add_argument("--freeze-encoder-epochs", type=int, default=0, help="train only the head for the first N epochs")
    t.add_argument("--patch", type=int_triple, default=None, help="patch size (default: the plans')")
    t.add_argument("--batch-size", type=positive_int, default=8)
    t.add_argument("--no-roi-mask", action="store_true",
                   help="let the encoder see the whole patch (default: only the pancreas / lesion region of the "
                        "label map, everything else set to a value no tissue takes)")
    t.add_argument("--roi-margin-mm", type=float, default=0.0,
                   help="mm of surroundings kept around the pancreas / lesion region (default 0)")
    t.add_argument("-c", "--configuration", default="3d_fullres")
    t.add_argument("-o", "--output", default=None,
                   help="output folder (default: $nnUNet_results/TASK/SupremClassifier__ARM__nN_seedS)")
    add_budget_args(t)

    pr = sub.add_parser("predict", help="scores.csv for a folder (or file) of images")
    pr.add_argument("-i", "--input", required=True, help="image file or folder")
    pr.add_argument("-m", "--model", required=True, help="classifier.pth or its folder")
    pr.add_argument("-o", "--output", required=True, help="scores CSV to write")
    pr.add_argument("--roi-labels", default=None,
                    help="folder of label maps (<case>.nii.gz, e.g. suprem_predict's output) whose pancreas / "
                         "lesion is the region the classifier sees; needed by ROI-masked classifiers (the default); "
                         "a case with an empty region is not scored (one warning line)")
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    add_backend_args(pr, "patch")

    fp = sub.add_parser("from-probabilities", help="segmentation-derived route: scores from <case>.npz files")
    fp.add_argument("probabilities", help="folder of suprem_predict --save-probabilities outputs")
    fp.add_argument("-o", "--output", required=True, help="scores CSV to write")
    fp.add_argument("--volume-ml", type=float, default=0.5, help="lesion volume whose top voxels are averaged")

    mk = sub.add_parser("make-phantoms", help="phantoms with pancreatic lesion sub-types + case_labels.csv")
    mk.add_argument("-d", "--dataset-id", type=int, required=True)
    mk.add_argument("-n", "--name", default="PancreasSubtypes")
    mk.add_argument("--num-train", type=positive_int, default=24)
    mk.add_argument("--num-test", type=int, default=24)
    mk.add_argument("--difficulty", type=_difficulty, default=0.5,
                    help="0: sub-types separate by intensity alone; 1: indistinguishable")
    mk.add_argument("--label-as", choices=["subtype", "tumor"], default="subtype",
                    help="label the lesion as its sub-type's class or as pancreas_tumor")
    mk.add_argument("--size", type=int_triple, default=[48, 48, 48])
    mk.add_argument("--spacing", type=float_triple, default=[5.0, 5.0, 5.0], help="mm x,y,z or one number")
    mk.add_argument("--seed", type=int, default=0)
    return p


def _main(args) -> int:
    if args.command == "make-phantoms":
        from ..synth.dataset import make_subtype_dataset

        print(make_subtype_dataset(args.dataset_id, args.name, args.num_train, args.num_test, args.difficulty,
                                   args.label_as, args.size, args.spacing, args.seed))
        return 0
    if args.command == "from-probabilities":
        from ..classification.route import scores_from_probabilities

        if args.volume_ml <= 0:
            raise InputError(f"--volume-ml must be positive, got {args.volume_ml}")
        print(scores_from_probabilities(args.probabilities, args.output, args.volume_ml))
        return 0
    from ..training.run import resolve_device

    if args.command == "predict":
        from ..classification.train import predict_folder
        from ..inference.backends import BackendConfig
        from ..inference.predict import set_threads

        set_threads(args.threads)
        print(predict_folder(Path(args.input), Path(args.model), Path(args.output), args.roi_labels,
                             resolve_device(args.device), BackendConfig(args.backend, args.backend_cache)))
        return 0
    from ..classification.train import train_classifier
    from ..dataset.raw import resolve_dataset

    if args.validate or args.save_every or args.no_resume:
        raise InputError("--validate, --save-every and --no-resume are segmentation-training flags; "
                         "suprem_classify train always trains anew and writes one checkpoint at the end")

    from ..seeding import seed_everything

    seed_everything(args.seed, args.deterministic)  # --seed (add_budget_args): also the subset, head and batches
    out = train_classifier(resolve_dataset(args.task), args.pretrained, args.from_scratch, args.num_train_cases,
                           args.seed, budget_from(args), args.output, args.labels, args.patch, args.batch_size,
                           args.freeze_encoder_epochs, args.configuration, resolve_device(args.device),
                           mask_roi=not args.no_roi_mask, roi_margin_mm=args.roi_margin_mm)
    print(out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
