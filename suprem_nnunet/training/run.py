"""Drive a SupremTrainer: build it from preprocessed plans, resume, train, record the run."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional, Type, Union

import torch

from .. import paths
from .base import SupremTrainer, TrainingBudget
from .checkpoint import RESUME_NAMES, read_resume_checkpoint, remove_temp_checkpoints

log = logging.getLogger(__name__)

FINAL = "checkpoint_final.pth"


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; validates 'cuda' / 'cpu' / 'mps'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, mps or auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA GPU (use --device cpu)")
    return torch.device(name)


def _maybe_init_ddp(device: torch.device) -> None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); nnU-Net's trainer does the rest."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        if device.type != "cuda":
            raise RuntimeError("multi-process (DDP) training needs CUDA GPUs")
        torch.distributed.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def load_preprocessed_plans(dataset: str, plans_name: str) -> tuple:
    folder = paths.preprocessed_root() / dataset
    plans_file, ds_file = folder / f"{plans_name}.json", folder / "dataset.json"
    if not plans_file.is_file():
        avail = sorted(p.stem for p in folder.glob("*.json") if p.stem not in ("dataset", "dataset_fingerprint",
                                                                             "splits_final"))
        raise FileNotFoundError(f"{plans_file}: no such plans; run suprem_plan_and_preprocess first"
                                f" (plans there: {', '.join(avail) or 'none'})")
    return json.loads(plans_file.read_text()), json.loads(ds_file.read_text())


def build_trainer(trainer_cls: Type[SupremTrainer], dataset: str, plans_name: str,
                  configuration: str = "3d_fullres", fold: Union[int, str] = "all",
                  device: torch.device = torch.device("cpu"), plans: Optional[dict] = None) -> SupremTrainer:
    """Instantiate `trainer_cls` on preprocessed `dataset` (plans may be given instead of read)."""
    _maybe_init_ddp(device)
    if "nnUNet_n_proc_DA" not in os.environ:  # nnU-Net would start up to 12 augmentation workers
        os.environ["nnUNet_n_proc_DA"] = "0" if device.type == "cpu" else str(min(12, os.cpu_count() or 1))
    file_plans, dataset_json = load_preprocessed_plans(dataset, plans_name)
    plans = dict(plans or file_plans)
    if configuration not in plans["configurations"]:
        raise ValueError(f"configuration {configuration!r} not in plans {plans_name} "
                         f"(has: {', '.join(plans['configurations'])})")
    plans["continue_training"] = True
    return trainer_cls(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
                       device=device)


def train(trainer: SupremTrainer, budget: TrainingBudget, resume: bool = True, validate: bool = False,
          **run_info) -> Path:
    """Train, resuming from the most advanced readable checkpoint (final, latest or best; an
    unreadable one is skipped with a warning), or from scratch with `resume=False`; returns the fold folder."""
    trainer.apply_budget(budget)
    out = Path(trainer.output_folder)
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
    else:
        for n in RESUME_NAMES:
            (out / n).unlink(missing_ok=True)
    trainer.write_run_info(**run_info)
    if trainer.current_epoch < trainer.num_epochs or resumed_from is None or resumed_from.name != FINAL:
        trainer.run_training()
    else:
        log.info("%s is already trained for %d epochs; nothing to do", out, trainer.num_epochs)
    if validate:
        trainer.perform_actual_validation(False)
    return out
