"""suprem_finetune: fine-tune pre-trained weights on a target task (`suprem_finetune TASK --pretrained`)."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .common import int_triple, parser, positive_int, run
from .train import add_budget_args, budget_from


def build_parser():
    p = parser("suprem_finetune", __doc__)
    p.add_argument("task", help="target dataset: id, name or DatasetNNN_Name")
    p.add_argument("configuration", nargs="?", default="3d_fullres")
    p.add_argument("--pretrained", nargs="?", const="latest", default="latest", metavar="CKPT",
                   help="checkpoint file, model folder or zoo name (e.g. supervised_suprem_unet_2100 after "
                        "suprem_zoo import); bare --pretrained takes the most recent pre-training run")
    p.add_argument("--from-scratch", action="store_true",
                   help="baseline: same plans, data and budget, but random initial weights")
    p.add_argument("--num-train-cases", type=positive_int, default=None, help="seeded few-shot subset size")
    p.add_argument("--freeze-encoder-epochs", type=int, default=0,
                   help="staged schedule: train only decoder and head for the first N epochs")
    p.add_argument("--max-patch", type=int_triple, default=None,
                   help="cap the preset's patch when starting from released weights (small machines)")
    p.add_argument("--no-verify", action="store_true", help="skip nnU-Net's dataset integrity check of the target")
    p.add_argument("-np", "--num-processes", type=positive_int, default=2, help="preprocessing workers")
    add_budget_args(p)
    return p


def _main(args) -> int:
    from ..dataset.raw import resolve_dataset
    from ..training.ddp import process_group
    from ..training.finetune import FinetuneConfig, finetune
    from ..training.run import resolve_device

    with process_group(resolve_device(args.device)) as device:  # torchrun: destroyed at the end or on an error
        out = finetune(FinetuneConfig(
            resolve_dataset(args.task), pretrained=args.pretrained, configuration=args.configuration,
            from_scratch=args.from_scratch, num_train_cases=args.num_train_cases, seed=args.seed,
            budget=budget_from(args), device=device, freeze_encoder_epochs=args.freeze_encoder_epochs,
            num_processes=args.num_processes, resume=not args.no_resume, verify=not args.no_verify,
            max_patch=args.max_patch, validate=args.validate, deterministic=args.deterministic))
    print(out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
