"""Drive a SupremTrainer: build it from preprocessed plans, resume, train, record the run."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Type, Union

import torch

from .. import paths
from ..networks.registry import get_backbone
from ..seeding import seed_everything
from . import ddp
from .base import SupremTrainer, TrainingBudget
from .resume import RESUME_NAMES, read_resume_checkpoint, remove_temp_checkpoints
from ..dataset.raw import read_json
from ..dataset.raw_checks import read_dataset_json

from ..errors import EnvironmentProblem, InputError, MissingFileError
from .model_card import write_model_card

log = logging.getLogger(__name__)

FINAL = "checkpoint_final.pth"


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; validates 'cuda' / 'cpu' / 'mps'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {name!r}; use cpu, cuda, mps or auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("--device cuda was asked for but torch sees no CUDA GPU (use --device cpu)")
    return torch.device(name)


def load_preprocessed_plans(dataset: str, plans_name: str) -> tuple:
    folder = paths.preprocessed_root() / dataset
    plans_file, ds_file = folder / f"{plans_name}.json", folder / "dataset.json"
    if not plans_file.is_file():
        avail = sorted(p.stem for p in folder.glob("*.json") if p.stem not in ("dataset", "dataset_fingerprint",
                                                                             "splits_final"))
        raise MissingFileError(f"{plans_file}: no such plans; run suprem_plan_and_preprocess first"
                                f" (plans there: {', '.join(avail) or 'none'})")

    plans = read_json(plans_file)  # one-line errors naming a broken file
    backbone = plans.get("suprem", {}).get("backbone", "nnunet") if isinstance(plans, dict) else None
    try:
        get_backbone(backbone)
    except ValueError as e:  # before nnU-Net's trainer creates the output folder
        raise InputError(f"{plans_file}: {e}") from None
    return plans, read_dataset_json(ds_file)


def check_launch(dataset: str, plans_name: str, configuration: str = "3d_fullres") -> None:
    """One-line error, before anything runs, when the plans were made for another number of GPUs than
    torchrun launched (the trainer checks again against the joined process group)."""
    plans, _ = load_preprocessed_plans(dataset, plans_name)
    if configuration in plans["configurations"]:
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        cfg = PlansManager(plans).get_configuration(configuration).configuration
        ddp.check_world_size(paths.preprocessed_root() / dataset / f"{plans_name}.json", configuration, cfg,
                             ddp.launched_world_size())


def build_trainer(trainer_cls: Type[SupremTrainer], dataset: str, plans_name: str,
                  configuration: str = "3d_fullres", fold: Union[int, str] = "all",
                  device: torch.device = torch.device("cpu"), plans: Optional[dict] = None) -> SupremTrainer:
    """Instantiate `trainer_cls` on preprocessed `dataset` (plans may be given instead of read).
    Launched by torchrun, the process joins the group first (ddp.py: NCCL on GPUs, gloo on CPU)."""
    device = ddp.join_if_launched(device)
    if "nnUNet_n_proc_DA" not in os.environ:  # nnU-Net would start up to 12 augmentation workers
        os.environ["nnUNet_n_proc_DA"] = "0" if device.type == "cpu" else str(min(12, os.cpu_count() or 1))
    file_plans, dataset_json = load_preprocessed_plans(dataset, plans_name)
    plans = dict(plans or file_plans)
    if configuration not in plans["configurations"]:
        raise InputError(f"configuration {configuration!r} not in plans {plans_name} "
                         f"(has: {', '.join(plans['configurations'])})")
    plans["continue_training"] = True
    return trainer_cls(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
                       device=device)


def train(trainer: SupremTrainer, budget: TrainingBudget, resume: bool = True, validate: bool = False,
          seed: Optional[int] = 0, deterministic: bool = False, card_stages: Sequence[Mapping] = (),
          **run_info) -> Path:
    """Train, resuming from the most advanced readable checkpoint (final, latest or best; an
    unreadable one is skipped with a warning), or from scratch with `resume=False`; returns the fold folder.

    `seed` seeds Python, NumPy and torch before the network is built (seeding.py) and every
    augmentation worker; with the main-process loader (`nnUNet_n_proc_DA=0`) a run from scratch is
    then bit-reproducible. None leaves the run unseeded. A resumed run continues from the
    checkpoint's weights and optimiser state, with generators seeded afresh (not where they stood).
    `deterministic`: see seeding.seed_everything and seeded_loader.py. When training ends the model
    card is written into the fold folder (training/model_card.py): `card_stages` (those of the model
    fine-tuning started from) and this run's stage, whose role is `run_info['role']` (default pretrain)."""
    trainer.apply_budget(budget)
    trainer.seed, trainer.deterministic = seed, bool(deterministic)
    if seed is not None:
        seed_everything(seed, deterministic)
    if deterministic:
        workers = int(os.environ.get("nnUNet_n_proc_DA", "0") or 0)
        log.info("deterministic: cuDNN deterministic kernels, torch.use_deterministic_algorithms (warn only: "
                 "kernels without a deterministic version warn and stay non-deterministic), %s",
                 f"{workers} augmentation workers handing out batches in a fixed order" if workers else
                 "the main-process data loader")
    out = Path(trainer.output_folder)
    if trainer.local_rank == 0:  # under DDP rank 0 alone touches the files
        remove_temp_checkpoints(out)
    resumed_from = None
    if resume:
        found = read_resume_checkpoint(out)
        if found is not None:
            resumed_from, ckpt = found
            trainer.load_checkpoint(ckpt)
            log.info("resuming from %s at epoch %d of %d", resumed_from, trainer.current_epoch, trainer.num_epochs)
        elif any((out / n).is_file() for n in RESUME_NAMES):
            log.warning("%s: no readable checkpoint to resume from; training starts from scratch", out)
    elif trainer.local_rank == 0:
        for n in RESUME_NAMES:
            (out / n).unlink(missing_ok=True)
    trainer.write_run_info(**run_info)
    if trainer.current_epoch < trainer.num_epochs or resumed_from is None or resumed_from.name != FINAL:
        trainer.run_training()
    else:
        log.info("%s is already trained for %d epochs; nothing to do", out, trainer.num_epochs)
    if validate:
        trainer.perform_actual_validation(False)
    pretrained = run_info.get("pretrained")
    write_model_card(trainer, str(run_info.get("role") or "pretrain"), None if pretrained is None else str(pretrained),
                     card_stages)
    return out
