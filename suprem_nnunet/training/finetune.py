"""Fine-tune pre-trained weights on a target task with novel classes, or train it from scratch.

`finetune()` takes the pre-training plans over to the target dataset (spacing, patch, network,
intensity normalisation), preprocesses the target with them, checks that the two fit, builds the
target network, copies the pre-trained body and remaps the head by class name (head_remap.py).
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import paths
from ..dataset.raw import atomic_write_json, copy_annotated_classes, label_names
from ..dataset.raw_checks import check_raw_dataset, read_dataset_json
from ..locking import file_lock
from ..models.resolve import resolve_model
from ..networks.registry import get_backbone
from ..planning.fingerprint import SupremFingerprintExtractor
from ..planning.mirroring import DEFAULT_POLICY, mirroring_for_dataset
from ..planning.planner import drop_unreadable_fingerprint, plans_for_num_gpus
from ..zoo import resolve_pretrained
from .base import SupremTrainer, TrainingBudget, unwrap
from ..models.trained import TrainedModel, build_trained_network, read_trained_model
from .ddp import launched_world_size, rank_zero_first
from .head_remap import ChannelMap, format_mapping, map_head, save_mapping, transfer_weights
from .model_card import prior_stages
from .run import build_trainer, train
from ..planning.planner import plan_and_preprocess, plans_name_for, PlanningCaps
from ..preprocessing.run import preprocess_dataset, preprocessed_cases
from ..configs import as_config
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)


@dataclass
class PretrainedSource:
    """Weights to start from: one of our trained models, or converted released / zoo weights."""

    path: str
    state_dict: Dict[str, torch.Tensor]
    backbone: str
    class_names: Optional[List[str]]  # foreground classes of the head in channel order; None: no usable head
    model: Optional[TrainedModel] = None  # set for our own models (they carry plans)
    arch_kwargs: Optional[dict] = None

    @classmethod
    def from_trained(cls, m: TrainedModel) -> "PretrainedSource":
        return cls(str(m.path), m.state_dict, m.backbone, m.class_names, m)

    @classmethod
    def from_weights(cls, w) -> "PretrainedSource":
        names = list(w.class_names) if w.class_names else None
        if names and names[0] == "background":
            names = names[1:]
        return cls(w.source, w.state_dict, w.backbone, names, None, dict(w.arch_kwargs))


class SupremFinetuneTrainer(SupremTrainer):
    """Starts from pre-trained weights (head remapped); optional few-shot subset and frozen encoder."""

    pretrained: Optional[PretrainedSource] = None
    train_cases: Optional[List[str]] = None
    val_cases: Optional[List[str]] = None
    freeze_encoder_epochs: int = 0

    def initialize(self):
        super().initialize()
        if self.pretrained is not None:
            self._load_pretrained()

    def _load_pretrained(self) -> None:
        src = self.pretrained
        if src.backbone != self.backbone.name:
            raise InputError(f"{src.path}: weights of backbone {src.backbone!r}, but the plans build "
                             f"{self.backbone.name!r}")
        if src.class_names is not None:
            rows = map_head(src.class_names, self.class_names)
        else:  # released weights whose head is not a plain class conv: every class starts fresh
            rows = [ChannelMap(0, "background", None, None, "fresh")] + [
                ChannelMap(i + 1, n, None, None, "novel") for i, n in enumerate(self.class_names)]
        net = unwrap(self.network)
        n_src = len(src.class_names) + 1 if src.class_names is not None else 0
        sd, stats = transfer_weights(src.state_dict, net.state_dict(), self.backbone.head_keys,
                                     rows if src.class_names is not None else None, n_src)
        net.load_state_dict(sd)
        table = format_mapping(rows)
        self.print_to_log_file(f"pre-trained weights from {src.path}\n{table}\n{stats}", add_timestamp=False)
        save_mapping(rows, Path(self.output_folder) / "head_mapping.json")

    def do_split(self):
        if self.train_cases is None:
            return super().do_split()
        return list(self.train_cases), list(self.val_cases or self.train_cases)

    def on_train_epoch_start(self):
        """Freeze the encoder for the first `freeze_encoder_epochs` epochs; under DDP the wrapper is
        rebuilt when that changes (its reducer expects a gradient for every parameter it was built with)."""
        frozen = self.current_epoch < self.freeze_encoder_epochs
        changed = False
        for name, p in unwrap(self.network).named_parameters():
            if any(name.startswith(k) for k in self.backbone.encoder_keys) and p.requires_grad == frozen:
                p.requires_grad_(not frozen)
                changed = True
        if changed:
            self.rewrap_ddp()
        if frozen:
            self.print_to_log_file(f"encoder frozen (epoch {self.current_epoch} < {self.freeze_encoder_epochs})")
        super().on_train_epoch_start()


class SupremScratchTrainer(SupremFinetuneTrainer):
    """The from-scratch baseline: same plans, data and budget as fine-tuning, random weights."""

    def initialize(self):
        self.pretrained = None
        super().initialize()


# ---------------------------------------------------------------------------- pre-trained sources
def latest_pretraining(results_root: Optional[Path] = None) -> Path:
    """The most recently written pre-training checkpoint under the results folder."""
    root = Path(results_root or paths.results_root())
    found = [p for pat in ("checkpoint_final.pth", "checkpoint_latest.pth")
             for p in root.glob(f"*/SupremPretrainer__*/fold_*/{pat}")]
    if not found:
        raise MissingFileError(f"no pre-training run under {root}; run suprem_train first or pass --pretrained CKPT")
    return max(found, key=lambda p: p.stat().st_mtime)


def load_pretrained(spec: Optional[str]) -> PretrainedSource:
    """Where fine-tuning starts: None / 'latest' (the most recent pre-training run), a checkpoint
    file or model folder of ours, a released-layout checkpoint file, or a zoo name (an imported
    release such as supervised_suprem_unet_2100, or an imported exported model)."""

    if spec in (None, "", "latest"):
        return PretrainedSource.from_trained(read_trained_model(latest_pretraining()))
    resolved = resolve_model(spec)
    if resolved.is_ours:
        return PretrainedSource.from_trained(read_trained_model(resolved.location))
    return PretrainedSource.from_weights(resolve_pretrained(resolved.location))


# ---------------------------------------------------------------------------- plans transfer
def check_compatibility(src: TrainedModel, target_json: dict, target: str, configuration: str) -> None:
    """Raise ValueError (one line) if the pre-trained model cannot be fine-tuned on the target."""
    build_trained_network(src)  # its weights fit the network its plans describe (not another architecture)
    if configuration not in src.plans["configurations"]:
        raise InputError(f"{src.path}: pre-trained plans have no configuration {configuration!r} "
                         f"(have: {', '.join(src.plans['configurations'])})")
    sc, tc = src.dataset_json["channel_names"], target_json["channel_names"]
    if len(sc) != len(tc):
        raise InputError(f"{target}: {len(tc)} input channel(s) but the pre-trained model takes {len(sc)}")
    schemes = src.plans["configurations"][configuration].get("normalization_schemes") or []
    for i, (s, t) in enumerate(zip(sc.values(), tc.values())):
        if s.strip().lower() != t.strip().lower():
            kind = schemes[i] if i < len(schemes) else "?"
            raise InputError(f"{target}: channel {i} is {t!r} but the pre-trained model was trained on {s!r} "
                             f"({kind}); modalities must match")
    get_backbone(src.backbone)  # raises for an unknown backbone
    if not any(k.startswith(h) for k in src.state_dict for h in get_backbone(src.backbone).head_keys):
        raise InputError(f"{src.path}: no tensor of the {src.backbone} head "
                         f"({', '.join(get_backbone(src.backbone).head_keys)}) in the checkpoint")


def transfer_plans(src: TrainedModel, target: str, num_gpus: int = 1) -> Tuple[dict, str]:
    """The pre-training plans re-addressed to `target` and to `num_gpus` DDP processes (per-GPU batch
    kept), with a `pretrain` block and the left-right mirroring decided again for the target's
    classes (planning/mirroring.py). Caller's dict untouched."""
    plans = plans_for_num_gpus(copy.deepcopy(src.plans), num_gpus)
    source_name = plans.get("plans_name", "plans")
    name = f"{source_name}_from_{plans['dataset_name']}"
    plans["dataset_name"], plans["plans_name"] = target, name
    for cname, cfg in plans["configurations"].items():
        if "data_identifier" in cfg:
            cfg["data_identifier"] = f"{name}_{cname}"
    b = get_backbone(src.backbone)
    plans.setdefault("suprem", {"backbone": b.name})
    plans["suprem"]["pretrain"] = {"checkpoint": str(src.path), "dataset": src.plans["dataset_name"],
                                   "plans": source_name, "class_names": src.class_names,
                                   "head_keys": list(b.head_keys), "encoder_keys": list(b.encoder_keys)}
    # the target's own classes and images decide the left-right mirroring, under the pre-training's policy
    requested = (plans["suprem"].get("mirroring") or {}).get("requested", DEFAULT_POLICY)
    raw = paths.raw_root() / target
    plans["suprem"]["mirroring"] = mirroring_for_dataset(raw, read_dataset_json(raw / "dataset.json"), plans,
                                                         requested).to_dict()
    return plans, name


def prepare_target(target: str, plans: dict, configuration: str, num_processes: int = 2,
                   verify: bool = True) -> None:
    """Fingerprint the target (once), write the transferred plans and preprocess with them; processes
    preparing the same target (parallel sweep runs) take turns (locking.file_lock on its folder)."""
    with file_lock(paths.preprocessed_root() / target):
        _prepare_target(target, plans, configuration, num_processes, verify)


def _prepare_target(target: str, plans: dict, configuration: str, num_processes: int, verify: bool) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id


    raw, pre = paths.raw_root() / target, paths.preprocessed_root() / target
    dataset_id = convert_dataset_name_to_id(target)
    drop_unreadable_fingerprint(pre / "dataset_fingerprint.json")
    if verify:
        check_raw_dataset(raw)  # one-line errors for broken cases, before nnU-Net's asserts
    if not (pre / "dataset_fingerprint.json").is_file():
        extract_fingerprint_dataset(dataset_id, SupremFingerprintExtractor, num_processes=num_processes,
                                    check_dataset_integrity=verify, clean=True, verbose=False)
    pre.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(raw / "dataset.json", pre / "dataset.json")
    copy_annotated_classes(raw, pre)  # training reads the preprocessed copy
    plans_file = pre / f"{plans['plans_name']}.json"
    if not plans_file.is_file() or json.loads(plans_file.read_text()) != plans:
        atomic_write_json(plans_file, plans)
    # redoes only what changed since the last completed run (revisions, edited labels; see preprocessing/manifest.py)
    preprocess_dataset(dataset_id, plans["plans_name"], (configuration,), [num_processes])


def plan_released_target(src: PretrainedSource, target_json: dict, target: str, configuration: str,
                         num_processes: int, verify: bool, max_patch: Optional[Sequence[int]] = None) -> str:
    """Plan and preprocess the target with the backbone's SuPreM-recipe preset (the preprocessing the
    released weights were trained with) and the weights' own width; returns the plans name."""
    channels = [c.strip().lower() for c in target_json["channel_names"].values()]
    if channels != ["ct"]:
        raise InputError(f"{target}: channels {list(target_json['channel_names'].values())} but {src.path} "
                         "was trained on one CT channel; modalities must match")

    caps = PlanningCaps(max_patch=tuple(max_patch) if max_patch else None)
    plan_and_preprocess(target, src.backbone, (configuration,), caps, num_processes=num_processes, verify=verify,
                        preset="suprem", arch_kwargs=src.arch_kwargs, num_gpus=launched_world_size())
    name = plans_name_for(src.backbone, "suprem")
    plans_file = paths.preprocessed_root() / target / f"{name}.json"
    plans = json.loads(plans_file.read_text())
    plans["suprem"]["pretrain"] = {"checkpoint": src.path, "class_names": src.class_names,
                                   "head_keys": list(get_backbone(src.backbone).head_keys),
                                   "encoder_keys": list(get_backbone(src.backbone).encoder_keys)}
    atomic_write_json(plans_file, plans)
    return name


def few_shot_split(case_ids: Sequence[str], n: Optional[int], seed: int = 0) -> Tuple[List[str], List[str]]:
    """Seeded subset of `n` training cases; the rest validate (all of them if none are left)."""
    ids = sorted(case_ids)
    if n is None or n >= len(ids):
        return ids, ids
    if n < 1:
        raise InputError("--num-train-cases must be at least 1")
    rng = np.random.default_rng(seed)
    train_ids = sorted(rng.choice(ids, size=n, replace=False).tolist())
    rest = [i for i in ids if i not in train_ids]
    return train_ids, rest


@dataclass
class FinetuneConfig:
    """One fine-tuning (or from-scratch) run; the defaults are `suprem_finetune`'s.

    target: the target dataset's full name. pretrained: None / 'latest' (the most recent
    pre-training run), a checkpoint file or model folder, or a zoo name. num_train_cases: seeded
    few-shot subset (None: every case). max_patch: cap of the preset's patch for released weights.
    The rest as in `PretrainConfig`.
    """

    target: str
    pretrained: Optional[str] = None
    configuration: str = "3d_fullres"
    from_scratch: bool = False
    num_train_cases: Optional[int] = None
    seed: int = 0
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    device: torch.device = torch.device("cpu")
    freeze_encoder_epochs: int = 0
    num_processes: int = 2
    resume: bool = True
    verify: bool = True
    max_patch: Optional[Sequence[int]] = None
    validate: bool = False
    deterministic: bool = False


def finetune(config: Union[FinetuneConfig, str], *args, **kwargs) -> Path:
    """Fine-tune (or, with from_scratch, train the baseline) on `target`; returns the fold folder.
    `seed` draws the few-shot subset and seeds the run (weights of new channels, patches,
    augmentation; see run.train). `validate`: nnU-Net's full validation of the held-out cases
    afterwards (`validation/summary.json`). Takes a FinetuneConfig, or its fields as arguments
    (`finetune(target, pretrained=..., ...)`)."""
    cfg = as_config(FinetuneConfig, config, args, kwargs)
    src = load_pretrained(cfg.pretrained)
    target_json = read_dataset_json(paths.raw_root() / cfg.target / "dataset.json")  # one line naming a bad file
    label_names(target_json)  # validates the target's labels
    if src.model is not None:
        check_compatibility(src.model, target_json, cfg.target, cfg.configuration)
        plans, plans_name = transfer_plans(src.model, cfg.target, launched_world_size())
        with rank_zero_first():  # under torchrun rank 0 preprocesses, the others then find it done
            prepare_target(cfg.target, plans, cfg.configuration, cfg.num_processes, cfg.verify)
    else:
        with rank_zero_first():
            plans_name = plan_released_target(src, target_json, cfg.target, cfg.configuration, cfg.num_processes,
                                              cfg.verify, cfg.max_patch)
    cls = SupremScratchTrainer if cfg.from_scratch else SupremFinetuneTrainer
    # the plans this run made (another process may rewrite the file's pretrain block meanwhile)
    trainer = build_trainer(cls, cfg.target, plans_name, cfg.configuration, "all", cfg.device,
                            plans if src.model is not None else None)
    all_ids = preprocessed_cases(trainer.preprocessed_dataset_folder)
    trainer.train_cases, trainer.val_cases = few_shot_split(all_ids, cfg.num_train_cases, cfg.seed)
    trainer.freeze_encoder_epochs = int(cfg.freeze_encoder_epochs)
    trainer.pretrained = None if cfg.from_scratch else src
    log.info("%s on %s: %d training cases (%s)", cls.__name__, cfg.target, len(trainer.train_cases),
             ", ".join(trainer.train_cases))
    return train(trainer, cfg.budget, resume=cfg.resume, validate=cfg.validate, seed=cfg.seed,
                 deterministic=cfg.deterministic, card_stages=[] if cfg.from_scratch else prior_stages(src.path),
                 role="scratch" if cfg.from_scratch else "finetune", pretrained=src.path,
                 train_cases=trainer.train_cases, freeze_encoder_epochs=cfg.freeze_encoder_epochs)
