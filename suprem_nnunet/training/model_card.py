"""A training run's stage of the model card (zoo/provenance.py), written when training ends."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import torch

from .. import __version__
from ..preprocessing.manifest import code_versions
from ..zoo.provenance import data_sources, find_card, new_card, stages_of, write_card
from .base import SupremTrainer

log = logging.getLogger(__name__)


def training_stage(trainer: SupremTrainer, role: str, pretrained: Optional[str] = None,
                   extra: Optional[Mapping] = None) -> Dict:
    """What this run was: data (sources, case counts, licences), plans, budget, seed, versions."""
    train_keys, val_keys = trainer.do_split()
    cfg = trainer.configuration_manager
    stage = {
        "role": role, "trainer": trainer.__class__.__name__, "dataset": trainer.plans_manager.dataset_name,
        "fold": trainer.fold,
        "data": {"training_cases": len(train_keys),
                 "validation_only_cases": len(set(map(str, val_keys)) - set(map(str, train_keys))),
                 "sources": data_sources(trainer.dataset_json, train_keys, val_keys)},
        "plans": {"name": trainer.plans_manager.plans_name, "configuration": trainer.configuration_name,
                  "backbone": trainer.backbone.name,
                  "preset": trainer.plans_manager.plans.get("suprem", {}).get("preset"),
                  "patch_size": list(cfg.patch_size), "spacing": list(cfg.spacing), "batch_size": cfg.batch_size},
        "budget": {"epochs": trainer.num_epochs, "iterations_per_epoch": trainer.num_iterations_per_epoch,
                   "val_iterations": trainer.num_val_iterations_per_epoch, "optimizer": trainer.optimizer_name,
                   "initial_lr": trainer.initial_lr, "weight_decay": trainer.weight_decay,
                   "lr_schedule": trainer.lr_schedule, "warmup_epochs": trainer.warmup_epochs,
                   "partial_loss": trainer.partial_loss_mode, "sample_by": trainer.sample_by},
        "epochs_trained": int(trainer.current_epoch),
        "seed": trainer.seed, "deterministic": trainer.deterministic,
        "pretrained": pretrained,
        "versions": {**code_versions(), "suprem_nnunet": __version__, "torch": torch.__version__},
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    stage.update(extra or {})
    return stage


def prior_stages(pretrained_path: Optional[str]) -> list:
    """The stages of the model fine-tuning starts from: its card's, or one stage naming weights
    that carry no card (released checkpoints)."""
    if not pretrained_path:
        return []
    card = find_card(Path(pretrained_path))
    if card is not None:
        return stages_of(card)
    return [{"role": "weights without a model card", "dataset": None, "pretrained": str(pretrained_path),
             "data": {"sources": []}}]


def write_model_card(trainer: SupremTrainer, role: str, pretrained: Optional[str] = None,
                     previous: Sequence[Mapping] = (), extra: Optional[Mapping] = None) -> Optional[Path]:
    """Write the card (previous stages + this run's) into the run's fold folder; rank 0 only."""
    if trainer.local_rank != 0:
        return None
    stage = training_stage(trainer, role, pretrained, extra)
    folder = Path(trainer.output_folder)
    card = new_card([*previous, stage], folder.parent.name, trainer.class_names)
    write_card(folder, card)
    log.info("model card written to %s (%s)", folder / "model_card.json", card["terms"]["summary"])
    return folder
