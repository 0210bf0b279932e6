"""SupremTrainer: nnU-Net's trainer with a budget, the partial-label loss and safe checkpoints.

Everything else (data loading, augmentation, poly LR, logging, the progress.png training curve)
is nnunetv2's, inherited unchanged. Construct it like nnUNetTrainer, then `apply_budget`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .. import paths
from ..dataset.raw import ANNOTATED_FILE, label_names, read_annotated_classes
from ..labels import canonical
from ..networks.registry import get_backbone
from .checkpoint import load_checkpoint
from .loss import PartialLabelDiceCELoss

log = logging.getLogger(__name__)


@dataclass
class TrainingBudget:
    """How long to train; None keeps nnU-Net's defaults (1000 epochs x 250 iterations)."""

    epochs: Optional[int] = None
    iterations_per_epoch: Optional[int] = None
    val_iterations: Optional[int] = None
    initial_lr: Optional[float] = None
    save_every: Optional[int] = None
    optimizer: Optional[str] = None  # "sgd" (nnU-Net: SGD, Nesterov momentum 0.99) or "adamw" (SuPreM's recipe)


OPTIMIZERS = ("sgd", "adamw")


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP and torch.compile wrappers."""
    mod = getattr(network, "module", network)
    return getattr(mod, "_orig_mod", mod)


class SupremTrainer(nnUNetTrainer):
    """Base trainer of suprem-nnunet (pre-training and fine-tuning derive from it)."""

    def __init__(self, plans: dict, configuration: str, fold, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.backbone = get_backbone(self.plans_manager.plans.get("suprem", {}).get("backbone", "nnunet"))
        self.enable_deep_supervision = self.backbone.deep_supervision
        self.optimizer_name = "sgd"
        self.partial_loss: Optional[PartialLabelDiceCELoss] = None
        self.annotated_channels: Dict[str, List[int]] = {}

    # ------------------------------------------------------------------ configuration
    def apply_budget(self, budget: TrainingBudget) -> None:
        if budget.epochs is not None:
            self.num_epochs = int(budget.epochs)
        if budget.iterations_per_epoch is not None:
            self.num_iterations_per_epoch = int(budget.iterations_per_epoch)
        if budget.val_iterations is not None:
            self.num_val_iterations_per_epoch = int(budget.val_iterations)
        if budget.initial_lr is not None:
            self.initial_lr = float(budget.initial_lr)
        if budget.save_every is not None:
            self.save_every = int(budget.save_every)
        if budget.optimizer is not None:
            if budget.optimizer not in OPTIMIZERS:
                raise ValueError(f"unknown optimizer {budget.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
            self.optimizer_name = budget.optimizer

    def configure_optimizers(self):
        """nnU-Net's SGD + poly schedule, or AdamW + the same poly schedule (SuPreM trains with AdamW;
        it also converges in far fewer iterations, which suits CPU budgets)."""
        if self.optimizer_name == "sgd":
            return super().configure_optimizers()
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

        opt = torch.optim.AdamW(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay)
        return opt, PolyLRScheduler(opt, self.initial_lr, self.num_epochs)

    @property
    def class_names(self) -> List[str]:
        return label_names(self.dataset_json)

    # ------------------------------------------------------------------ loss with partial labels
    def _build_loss(self):
        base = super()._build_loss()
        if self.label_manager.has_regions or self.label_manager.has_ignore_label:
            return base  # nnU-Net's own losses handle regions and the ignore label
        self.partial_loss = PartialLabelDiceCELoss(batch_dice=self.configuration_manager.batch_dice)
        if isinstance(base, DeepSupervisionWrapper):
            base.loss = self.partial_loss
            return base
        return self.partial_loss

    def _annotated_mask(self, keys: Sequence[str]) -> Optional[torch.Tensor]:
        if not self.annotated_channels:
            return None
        n = self.label_manager.num_segmentation_heads
        mask = torch.ones((len(keys), n), dtype=torch.bool)
        for i, k in enumerate(keys):
            chans = self.annotated_channels.get(str(k))
            if chans is not None:
                mask[i] = False
                mask[i, [0, *chans]] = True
        return mask

    def load_annotated_classes(self) -> None:
        """Read `annotated_classes.json` (preprocessed folder, else raw) into channel ids per case."""
        name = self.plans_manager.dataset_name
        data = None
        for folder in (self.preprocessed_dataset_folder_base, paths.raw_root() / name):
            if folder is not None and (Path(folder) / ANNOTATED_FILE).is_file():
                data = read_annotated_classes(folder)
                break
        if not data:
            self.annotated_channels = {}
            return
        ids = {canonical(k): int(v) for k, v in self.dataset_json["labels"].items() if int(v) != 0}
        self.annotated_channels = {case: sorted({ids[canonical(c)] for c in names if canonical(c) in ids})
                                   for case, names in data.items()}
        partial = sum(len(v) < len(ids) for v in self.annotated_channels.values())
        self.print_to_log_file(f"annotated classes: {len(data)} cases listed, {partial} partially labelled")

    def on_train_start(self):
        self.load_annotated_classes()
        super().on_train_start()

    def train_step(self, batch: dict) -> dict:
        if self.partial_loss is not None:
            self.partial_loss.set_annotated(self._annotated_mask(batch["keys"]))
        return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        if self.partial_loss is not None:
            self.partial_loss.set_annotated(self._annotated_mask(batch["keys"]))
        return super().validation_step(batch)

    # ------------------------------------------------------------------ networks without nnU-Net's decoder
    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        decoder = getattr(unwrap(self.network), "decoder", None)
        if decoder is not None and hasattr(decoder, "deep_supervision"):
            decoder.deep_supervision = enabled

    # ------------------------------------------------------------------ checkpoints
    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """Resume from a checkpoint, read with weights_only=True (nnunetv2 2.8.1 unpickles freely and
        mishandles a dict argument, so the state restoration is done here)."""
        if not self.was_initialized:
            self.initialize()
        ckpt = filename_or_checkpoint
        if isinstance(ckpt, (str, Path)):
            ckpt = load_checkpoint(ckpt, self.device)
        net = unwrap(self.network)
        own = net.state_dict().keys()
        net.load_state_dict({k[7:] if k not in own and k.startswith("module.") else k: v
                             for k, v in ckpt["network_weights"].items()})
        self.my_init_kwargs = ckpt["init_args"]
        self.current_epoch = int(ckpt["current_epoch"])
        self.logger.load_checkpoint(ckpt["logging"])
        self._best_ema = ckpt["_best_ema"]
        self.inference_allowed_mirroring_axes = ckpt.get("inference_allowed_mirroring_axes",
                                                         self.inference_allowed_mirroring_axes)
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        if self.grad_scaler is not None and ckpt.get("grad_scaler_state") is not None:
            self.grad_scaler.load_state_dict(ckpt["grad_scaler_state"])

    def write_run_info(self, **info) -> None:
        """Record what this run was (budget, device, extra fields) next to its checkpoints."""
        d = {"trainer": self.__class__.__name__, "backbone": self.backbone.name,
             "dataset": self.plans_manager.dataset_name, "plans": self.plans_manager.plans_name,
             "configuration": self.configuration_name, "fold": self.fold, "device": str(self.device),
             "epochs": self.num_epochs, "iterations_per_epoch": self.num_iterations_per_epoch,
             "initial_lr": self.initial_lr, "optimizer": self.optimizer_name, "class_names": self.class_names, **info}
        Path(self.output_folder).mkdir(parents=True, exist_ok=True)
        (Path(self.output_folder) / "run_info.json").write_text(json.dumps(d, indent=2) + "\n")


class SupremPretrainer(SupremTrainer):
    """Supervised pre-training on a (possibly partially labelled, multi-source) dataset."""
