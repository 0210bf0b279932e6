"""SupremTrainer: nnU-Net's trainer with a budget, the partial-label loss and safe checkpoints.

Everything else (data loading, augmentation, poly LR, logging, the progress.png training curve)
is nnunetv2's, inherited unchanged. Construct it like nnUNetTrainer, then `apply_budget`.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from .. import __version__, paths
from ..dataset.raw import ANNOTATED_FILE, label_names, read_annotated_classes
from ..labels import canonical, host_of, parts_of
from ..networks.registry import get_backbone
from ..preprocessing.manifest import code_versions
from ..seeding import rank_seed, seed_everything
from . import ddp
from ..networks.checkpoint import load_training_checkpoint, replace_durably, temp_checkpoint_path
from .loss import PartialLabelDiceCELoss
from .online_dice import masked_tp_fp_fn
from .sampling import case_probabilities, case_sources, check_sample_by, draw_shares, set_sampling
from .seeded_loader import seeded_augmenters
from .sided import SidedMirroringMixin
from ..preprocessing.plans_manager import as_suprem
from .lr_schedule import WarmupCosineLRScheduler
from ..errors import InputError, MissingFileError

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
    warmup_epochs: Optional[int] = None  # adamw only; None: ADAMW_WARMUP_FRACTION of the epochs


OPTIMIZERS = ("sgd", "adamw")
#: marginal: the partial-label loss (loss.py); naive: every case taken as fully labelled, so an
#: unannotated organ is taught as background (plain nnU-Net's Dice + CE; for comparison only)
PARTIAL_LOSSES = ("marginal", "naive")
#: SuPreM's AdamW recipe (MrGiovanni/SuPreM supervised_pretraining/train.py): lr 1e-4, weight decay
#: 1e-5, linear warm-up (20 of 800 epochs) then cosine annealing
ADAMW_LR = 1e-4
ADAMW_WEIGHT_DECAY = 1e-5
ADAMW_WARMUP_FRACTION = 20 / 800


def default_warmup_epochs(num_epochs: int) -> int:
    """SuPreM's share of warm-up epochs, at least one (none for a one-epoch run)."""
    return min(max(1, round(ADAMW_WARMUP_FRACTION * num_epochs)), max(0, num_epochs - 1))


def hosted_channel_pairs(class_names: Sequence[str]) -> List[Tuple[int, int]]:
    """(organ channel, tumour channel) for every tumour class and every class of its host organ
    (channels 1..N in `class_names` order; a host that is a union, e.g. kidney, counts by its parts)."""
    channel = {canonical(n): i + 1 for i, n in enumerate(class_names)}
    pairs = []
    for tumour, t in channel.items():
        host = host_of(tumour)
        if host is None:
            continue
        for organ in (host, *parts_of(host)):
            if organ in channel:
                pairs.append((channel[organ], t))
    return pairs


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP and torch.compile wrappers."""
    mod = getattr(network, "module", network)
    return getattr(mod, "_orig_mod", mod)


class SupremTrainer(SidedMirroringMixin, nnUNetTrainer):
    """Base trainer of suprem-nnunet (pre-training and fine-tuning derive from it)."""

    def __init__(self, plans: dict, configuration: str, fold, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # before nnU-Net asserts global batch >= world size (and before it creates the output folder)
        ddp.check_world_size(paths.preprocessed_root() / plans["dataset_name"] / f"{plans['plans_name']}.json",
                             configuration, PlansManager(plans).get_configuration(configuration).configuration,
                             ddp.world_size())
        super().__init__(plans, configuration, fold, dataset_json, device)

        if self.is_ddp:  # nnU-Net forces cuda:<global rank>; keep the asked device (gloo on CPU)
            self.device = ddp.rank_device(device)
            if self.device.type != "cuda":
                self.grad_scaler = None

        self.plans_manager = as_suprem(self.plans_manager)  # resolves a preset's RAS reader/writer by dotted name
        self.configuration_manager = self.plans_manager.get_configuration(configuration)  # ... and its resampling
        self.backbone = get_backbone(self.plans_manager.plans.get("suprem", {}).get("backbone", "nnunet"))
        self.enable_deep_supervision = self.backbone.deep_supervision
        self.optimizer_name = "sgd"
        self.warmup_epochs = 0
        self.partial_loss: Optional[PartialLabelDiceCELoss] = None
        self.annotated_channels: Dict[str, List[int]] = {}
        self.partial_loss_mode = "marginal"  # see PARTIAL_LOSSES
        self.sample_by = "case"  # see sampling.SAMPLE_BY
        self.seed: Optional[int] = None  # set by train(); None: unseeded (nnU-Net's behaviour)
        self.deterministic = False  # ordered augmenter batches; cuDNN/torch deterministic kernels

    def configure_partial_labels(self, loss: str = "marginal", sample_by: str = "case") -> None:
        """The partial-label loss (`marginal`, or `naive` for comparison) and how training cases are
        drawn (`case`: nnU-Net's uniform draw, `source`, `class`; see sampling.py)."""
        if loss not in PARTIAL_LOSSES:
            raise InputError(f"unknown --partial-loss {loss!r}; choose one of {', '.join(PARTIAL_LOSSES)}")
        self.partial_loss_mode, self.sample_by = loss, check_sample_by(sample_by)

    # ------------------------------------------------------------------ DDP
    def initialize(self):
        """nnU-Net's initialize, but under DDP the network is wrapped here (ddp.py): on the asked
        device (gloo on CPU), with the U-Net's batch-statistics BN kept per rank, and the loss is
        built for DDP (nnU-Net's own wrapping forces CUDA and converts every BN to SyncBN)."""
        is_ddp, self.is_ddp = self.is_ddp, False
        try:
            super().initialize()
        finally:
            self.is_ddp = is_ddp
        if is_ddp:
            self._set_batch_size_and_oversample()  # this rank's share of the global batch
            self.network = ddp.wrap(ddp.prepare_network(self.network, self.device), self.device)
            self.loss = self._build_loss()

    def rewrap_ddp(self) -> None:
        """Rebuild the DDP wrapper after parameters were frozen or unfrozen: its reducer expects a
        gradient for exactly the parameters that required one when it was built."""
        if self.is_ddp:
            self.network = ddp.wrap(self.network.module, self.device)

    # ------------------------------------------------------------------ configuration
    def apply_budget(self, budget: TrainingBudget) -> None:
        if budget.epochs is not None:
            self.num_epochs = int(budget.epochs)
        if budget.iterations_per_epoch is not None:
            self.num_iterations_per_epoch = int(budget.iterations_per_epoch)
        if budget.val_iterations is not None:
            self.num_val_iterations_per_epoch = int(budget.val_iterations)
        if budget.save_every is not None:
            self.save_every = int(budget.save_every)
        if budget.optimizer is not None:
            if budget.optimizer not in OPTIMIZERS:
                raise InputError(f"unknown optimizer {budget.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
            if budget.optimizer == "adamw" and self.optimizer_name != "adamw":  # its own defaults, not SGD's
                self.initial_lr, self.weight_decay = ADAMW_LR, ADAMW_WEIGHT_DECAY
            self.optimizer_name = budget.optimizer
        if budget.initial_lr is not None:
            self.initial_lr = float(budget.initial_lr)
        if self.optimizer_name == "adamw":
            w = default_warmup_epochs(self.num_epochs) if budget.warmup_epochs is None else int(budget.warmup_epochs)
            if not 0 <= w <= self.num_epochs:
                raise InputError(f"--warmup-epochs {w} must be between 0 and the number of epochs ({self.num_epochs})")
            self.warmup_epochs = w
        elif budget.warmup_epochs:
            raise InputError("--warmup-epochs applies to --optimizer adamw (nnU-Net's SGD uses its poly schedule)")

    @property
    def lr_schedule(self) -> str:
        return "warmup_cosine" if self.optimizer_name == "adamw" else "poly"

    def configure_optimizers(self):
        """nnU-Net's SGD + poly schedule, or SuPreM's AdamW + linear warm-up then cosine (per epoch)."""
        if self.optimizer_name == "sgd":
            return super().configure_optimizers()

        opt = torch.optim.AdamW(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay)
        return opt, WarmupCosineLRScheduler(opt, self.initial_lr, self.num_epochs, self.warmup_epochs)

    @property
    def class_names(self) -> List[str]:
        return label_names(self.dataset_json)

    # ------------------------------------------------------------------ loss with partial labels
    def _build_loss(self):
        base = super()._build_loss()
        if self.label_manager.has_regions or self.label_manager.has_ignore_label:
            return base  # nnU-Net's own losses handle regions and the ignore label
        self.partial_loss = PartialLabelDiceCELoss(batch_dice=self.configuration_manager.batch_dice,
                                                   hosted=hosted_channel_pairs(self.class_names),
                                                   ddp=self.is_ddp)
        if isinstance(base, DeepSupervisionWrapper):
            base.loss = self.partial_loss
            return base
        return self.partial_loss

    def _annotated_mask(self, keys: Sequence[str]) -> Optional[torch.Tensor]:
        """(B, C) bool for the loss and the online Dice: True where case b annotates channel c
        (background always); None when the dataset is fully labelled."""
        if not self.annotated_channels:
            return None
        mask = torch.zeros((len(keys), self.label_manager.num_segmentation_heads), dtype=torch.bool)
        for i, k in enumerate(keys):
            mask[i, [0, *self.annotated_channels[str(k)]]] = True
        return mask

    def load_annotated_classes(self) -> None:
        """Read `annotated_classes.json` of the preprocessed dataset (the copy suprem_plan_and_preprocess
        makes; authoritative) into channel ids per case. No file there and none in the raw folder:
        every case is fully labelled. One in the raw folder only, a training or validation case
        without an entry, or a class the dataset.json lacks: one-line error naming the file."""
        pre = Path(self.preprocessed_dataset_folder_base)
        raw = paths.raw_root() / self.plans_manager.dataset_name
        train_keys, val_keys = self.do_split()
        data = read_annotated_classes(pre, self.class_names, [*train_keys, *val_keys])
        if data is None:
            if (raw / ANNOTATED_FILE).is_file():
                raise MissingFileError(f"{pre / ANNOTATED_FILE}: missing, but {raw / ANNOTATED_FILE} exists (partial "
                                        "labels would be taken as full); rerun suprem_plan_and_preprocess to copy it")
            self.annotated_channels = {}
            self.print_to_log_file(f"annotated classes: no {ANNOTATED_FILE} in {pre} or {raw}; "
                                   "every case is treated as fully labelled")
            return
        ids = {canonical(n): i + 1 for i, n in enumerate(self.class_names)}
        self.annotated_channels = {case: sorted({ids[canonical(c)] for c in names}) for case, names in data.items()}
        used = set(map(str, train_keys)) | set(map(str, val_keys))
        partial = sum(len(self.annotated_channels[k]) < len(ids) for k in used)
        self.print_to_log_file(f"annotated classes: {len(used)} training/validation cases listed in "
                               f"{pre / ANNOTATED_FILE}, {partial} partially labelled")

    def on_train_start(self):
        self.load_annotated_classes()
        super().on_train_start()

    # ------------------------------------------------------------------ which cases the batches draw
    def get_dataloaders(self):
        """nnU-Net's loaders; with `sample_by` source or class, the training loader draws its cases
        with the weights of sampling.py instead of uniformly. A seeded run seeds every augmentation
        worker (seeded_loader.py); under DDP each rank's main-process generators get their own seed,
        so that the ranks draw different patches."""
        if self.seed is not None and self.is_ddp:
            seed_everything(rank_seed(self.seed, self.local_rank), self.deterministic)
        with seeded_augmenters(self.seed, self.local_rank if self.is_ddp else 0, ordered=self.deterministic):
            train_gen, val_gen = super().get_dataloaders()
        if self.sample_by != "case":
            keys = [str(k) for k in self.do_split()[0]]
            if self.sample_by == "source":
                groups = {k: [s] for k, s in case_sources(self.dataset_json, keys).items()}
                p = case_probabilities(keys, "source", sources={k: g[0] for k, g in groups.items()})
            else:
                everything = range(1, len(self.class_names) + 1)  # no annotated_classes.json: all
                groups = {k: [self.class_names[c - 1] for c in self.annotated_channels.get(k, everything)]
                          for k in keys}
                p = case_probabilities(keys, "class", annotated=groups)
            set_sampling(train_gen, dict(zip(keys, p)))
            shares = ", ".join(f"{g} {v:.1%}" for g, v in draw_shares(keys, p, groups).items())
            self.print_to_log_file(f"sampling by {self.sample_by}: expected share of draws per "
                                   f"{self.sample_by}: {shares}")
        return train_gen, val_gen

    def _loss_mask(self, keys: Sequence[str]) -> Optional[torch.Tensor]:
        """The loss's annotated mask: the cases' annotated classes, or None (all) for the naive loss."""
        return None if self.partial_loss_mode == "naive" else self._annotated_mask(keys)

    def train_step(self, batch: dict) -> dict:
        if self.partial_loss is not None:
            self.partial_loss.set_annotated(self._loss_mask(batch["keys"]))
        return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step (loss, pseudo-Dice counts), with the counts recomputed per case so
        that classes a case does not annotate are left out (online_dice.py); the network output is
        caught with a forward hook rather than running the network twice."""
        if self.partial_loss is None:
            return super().validation_step(batch)
        mask = self._annotated_mask(batch["keys"])
        self.partial_loss.set_annotated(self._loss_mask(batch["keys"]))
        if mask is None:  # fully labelled: nnU-Net's counts are already right
            return super().validation_step(batch)
        outputs = []
        hook = self.network.register_forward_hook(lambda _m, _i, out: outputs.append(out))
        try:
            result = super().validation_step(batch)
        finally:
            hook.remove()
        output, target = outputs[-1], batch["target"]
        if self.enable_deep_supervision:
            output, target = output[0], target[0]
        tp, fp, fn = masked_tp_fp_fn(output, target.to(output.device), mask)
        return {**result, "tp_hard": tp, "fp_hard": fp, "fn_hard": fn}

    # ------------------------------------------------------------------ networks without nnU-Net's decoder
    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        decoder = getattr(unwrap(self.network), "decoder", None)
        if decoder is not None and hasattr(decoder, "deep_supervision"):
            decoder.deep_supervision = enabled

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint (latest, best and final alike), written to a temporary file in the same
        folder, flushed to disk and renamed: a kill mid-write leaves the previous file (or none) under
        `filename`, never a truncated one."""
        target = Path(filename)
        tmp = temp_checkpoint_path(target)
        try:
            super().save_checkpoint(str(tmp))
            if tmp.is_file():  # nothing is written on DDP ranks > 0 or with checkpointing disabled
                replace_durably(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """Resume from a checkpoint, read with weights_only=True (nnunetv2 2.8.1 unpickles freely and
        mishandles a dict argument, so the state restoration is done here)."""
        if not self.was_initialized:
            self.initialize()
        ckpt = filename_or_checkpoint
        if isinstance(ckpt, (str, Path)):
            ckpt = load_training_checkpoint(ckpt, self.device)
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
             "optimizer": self.optimizer_name, "initial_lr": self.initial_lr, "weight_decay": self.weight_decay,
             "lr_schedule": self.lr_schedule, "warmup_epochs": self.warmup_epochs,
             "partial_loss": self.partial_loss_mode, "sample_by": self.sample_by,
             "world_size": ddp.world_size(), "global_batch_size": self.configuration_manager.batch_size,
             "seed": self.seed, "deterministic": self.deterministic,
             "augmentation_workers": int(os.environ.get("nnUNet_n_proc_DA", "0") or 0),
             "versions": {"suprem_nnunet": __version__, "torch": torch.__version__,
                          "nnunetv2": code_versions()["nnunetv2"]},
             "class_names": self.class_names, **info}
        if self.local_rank != 0:
            return
        Path(self.output_folder).mkdir(parents=True, exist_ok=True)
        (Path(self.output_folder) / "run_info.json").write_text(json.dumps(d, indent=2) + "\n")


class SupremPretrainer(SupremTrainer):
    """Supervised pre-training on a (possibly partially labelled, multi-source) dataset."""
