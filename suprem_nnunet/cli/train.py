"""suprem_train: supervised pre-training (`suprem_train PRETRAIN 3d_fullres`)."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..networks.registry import BACKBONES
from .common import add_seed_args, parser, positive_int, run


def add_budget_args(p) -> None:
    g = p.add_argument_group("budget")
    g.add_argument("--epochs", type=positive_int, default=None, help="epochs (nnU-Net: 1000)")
    g.add_argument("--iterations-per-epoch", type=positive_int, default=None, help="(nnU-Net: 250)")
    g.add_argument("--val-iterations", type=int, default=None, help="validation iterations per epoch (nnU-Net: 50)")
    g.add_argument("--lr", type=float, default=None,
                   help="initial learning rate; unset: the optimiser's own (sgd 1e-2, adamw 1e-4)")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], default=None,
                   help="sgd: nnU-Net's SGD, momentum 0.99, weight decay 3e-5, poly schedule (default); "
                        "adamw: SuPreM's recipe, weight decay 1e-5, linear warm-up then cosine")
    g.add_argument("--warmup-epochs", type=int, default=None,
                   help="adamw warm-up epochs; unset: 2.5%% of the epochs (SuPreM's 20 of 800), at least 1")
    g.add_argument("--save-every", type=positive_int, default=None, help="write checkpoint_latest every N epochs")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    g.add_argument("--no-resume", action="store_true", help="start over instead of resuming a previous run")
    g.add_argument("--validate", action="store_true", help="run nnU-Net's full validation after training")
    add_seed_args(g, "everything random in the run: weights, patches, augmentation (and the few-shot subset)")


def budget_from(args):
    from ..training.base import TrainingBudget

    return TrainingBudget(args.epochs, args.iterations_per_epoch, args.val_iterations, args.lr, args.save_every,
                          args.optimizer, args.warmup_epochs)


def add_partial_label_args(p) -> None:
    g = p.add_argument_group("partial labels")
    g.add_argument("--partial-loss", default="marginal", metavar="{marginal,naive}",
                   help="marginal: classes a case does not annotate are not taught as background (default); "
                        "naive: every case taken as fully labelled, as plain nnU-Net does (for comparison)")
    g.add_argument("--sample-by", default="case", metavar="{case,source,class}",
                   help="how training cases are drawn: case: uniformly, as nnU-Net; source: each source "
                        "(dataset.json case_sources) equally often; class: a class drawn uniformly, then one "
                        "of the cases annotating it (see training/sampling.py)")


def build_parser():
    p = parser("suprem_train", __doc__)
    p.add_argument("dataset", help="pre-training dataset: id, name or DatasetNNN_Name")
    p.add_argument("configuration", nargs="?", default="3d_fullres")
    p.add_argument("-b", "--backbone", default="nnunet", choices=sorted(BACKBONES))
    p.add_argument("--preset", choices=["suprem"], default=None, help="train on the plans made with this preset")
    p.add_argument("-f", "--fold", default="all", help="'all' (train on every case) or a CV fold 0-4")
    add_budget_args(p)
    add_partial_label_args(p)
    return p


def _main(args) -> int:
    from ..training.pretrain import PretrainConfig, pretrain

    out = pretrain(PretrainConfig(
        dataset=args.dataset, backbone=args.backbone, preset=args.preset, configuration=args.configuration,
        fold=args.fold, device=args.device, budget=budget_from(args), resume=not args.no_resume,
        validate=args.validate, seed=args.seed, deterministic=args.deterministic,
        partial_loss=args.partial_loss, sample_by=args.sample_by))
    print(out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
