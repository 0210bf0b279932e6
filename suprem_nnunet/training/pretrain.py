"""Supervised pre-training in one call: `pretrain(PretrainConfig(dataset, ...))` -> the fold folder.

It checks the arguments, brings the preprocessed data up to date with the raw dataset, joins the
process group when launched by torchrun, builds the trainer on the backbone's plans
(`plans_name_for`), sets the partial-label loss and case sampling, and trains (run.train: resumes
from the most advanced readable checkpoint, records run_info.json). `suprem_train`, the demo, the
experiments and the benchmarks all call it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Type, Union

import torch

from ..dataset.raw import resolve_dataset
from ..errors import InputError
from ..planning.planner import plans_name_for
from ..preprocessing.run import ensure_preprocessed, preprocessed_cases
from .base import PARTIAL_LOSSES, SupremPretrainer, TrainingBudget
from .ddp import process_group, rank_zero_first
from .run import build_trainer, check_launch, resolve_device, train
from .sampling import check_sample_by

log = logging.getLogger(__name__)


class SubsetPretrainer(SupremPretrainer):
    """Pre-training on `train_cases` only (None: every case), e.g. the experiments' pretrain_scale design."""

    train_cases: Optional[List[str]] = None

    def do_split(self):
        if self.train_cases is None:
            return super().do_split()
        return list(self.train_cases), list(self.train_cases)


@dataclass
class PretrainConfig:
    """One pre-training run; the defaults are `suprem_train`'s.

    dataset: id, name or DatasetNNN_Name of a planned and preprocessed dataset.
    backbone, preset: which plans to train on (`plans_name_for(backbone, preset)`).
    configuration, fold: nnU-Net's configuration and fold ('all': train on every case, or 0-4).
    device: 'auto', 'cpu', 'cuda', 'mps' or a torch.device.
    budget: epochs, iterations, learning rate, optimiser (None fields: nnU-Net's defaults).
    resume: continue from the most advanced readable checkpoint (False: start over).
    validate: nnU-Net's full validation after training.
    seed, deterministic: see run.train (None: unseeded).
    partial_loss, sample_by: the partial-label loss ('marginal' or 'naive') and how cases are drawn
        ('case', 'source', 'class'; see sampling.py).
    update_preprocessed: first bring the preprocessed data up to date with the raw dataset
        (preprocessing/run.ensure_preprocessed); False when the caller has just preprocessed.
    trainer_class: the trainer (SubsetPretrainer to train on the first `num_train_cases` cases).
    num_train_cases: with SubsetPretrainer, the first N preprocessed cases (sorted; None: all),
        recorded as `pretrain_cases` in run_info.json.
    role, run_info: recorded in run_info.json.
    """

    dataset: str
    backbone: str = "nnunet"
    preset: Optional[str] = None
    configuration: str = "3d_fullres"
    fold: Union[int, str] = "all"
    device: Union[str, torch.device] = "auto"
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    resume: bool = True
    validate: bool = False
    seed: Optional[int] = 0
    deterministic: bool = False
    partial_loss: str = "marginal"
    sample_by: str = "case"
    update_preprocessed: bool = True
    trainer_class: Type[SupremPretrainer] = SupremPretrainer
    num_train_cases: Optional[int] = None
    role: str = "pretrain"
    run_info: Dict[str, Any] = field(default_factory=dict)


def check_pretrain_config(config: PretrainConfig) -> None:
    """One-line errors for settings that are wrong on their face, before anything is read or written."""
    if config.partial_loss not in PARTIAL_LOSSES:
        raise InputError(f"unknown --partial-loss {config.partial_loss!r}; choose one of {', '.join(PARTIAL_LOSSES)}")
    check_sample_by(config.sample_by)
    if config.num_train_cases is not None and config.num_train_cases < 1:
        raise InputError(f"num_train_cases must be at least 1, got {config.num_train_cases}")
    if config.num_train_cases is not None and not hasattr(config.trainer_class, "train_cases"):
        raise TypeError(f"{config.trainer_class.__name__} cannot train on a subset (use SubsetPretrainer)")


def pretrain(config: PretrainConfig) -> Path:
    """Pre-train as `config` says; returns the fold folder (checkpoint_final.pth, run_info.json)."""
    check_pretrain_config(config)
    dataset = resolve_dataset(config.dataset)
    fold = config.fold if config.fold == "all" else int(config.fold)
    device = config.device if isinstance(config.device, torch.device) else resolve_device(config.device)
    plans_name = plans_name_for(config.backbone, config.preset)
    check_launch(dataset, plans_name, config.configuration)
    with process_group(device) as device:  # torchrun: joined here, destroyed at the end or on an error
        if config.update_preprocessed:
            with rank_zero_first():  # revisions imported since, or a killed preprocessing
                ensure_preprocessed(dataset, plans_name, config.configuration)
        trainer = build_trainer(config.trainer_class, dataset, plans_name, config.configuration, fold, device)
        trainer.configure_partial_labels(config.partial_loss, config.sample_by)
        info = dict(config.run_info)
        if hasattr(trainer, "train_cases"):
            cases = preprocessed_cases(trainer.preprocessed_dataset_folder)
            n = config.num_train_cases
            if n is not None and n < len(cases):
                trainer.train_cases = cases[:n]
            info["pretrain_cases"] = len(trainer.train_cases or cases)
        return train(trainer, config.budget, resume=config.resume, validate=config.validate, seed=config.seed,
                     deterministic=config.deterministic, role=config.role, **info)
