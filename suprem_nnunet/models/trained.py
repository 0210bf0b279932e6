"""Trained models: the layout of nnU-Net model folders and what prediction and fine-tuning read from
a checkpoint.

A model folder is nnU-Net's: `<results>/<Dataset>/<Trainer>__<plans>__<configuration>/` holding
`plans.json`, `dataset.json` and `fold_<f>/checkpoint_{final,best,latest}.pth`. A checkpoint carries
its own plans and dataset.json (`init_args`), so one file is enough to predict or fine-tune.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from ..dataset.raw import label_names
from ..errors import MissingFileError
from ..networks.checkpoint import CheckpointError, load_training_checkpoint
from ..planning.mirroring import recorded

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")


@dataclass
class TrainedModel:
    """What prediction and fine-tuning need from a trained checkpoint."""

    path: Path
    state_dict: Dict[str, torch.Tensor]
    plans: Dict
    dataset_json: Dict
    configuration: str
    trainer_name: str
    mirror_axes: Optional[tuple]

    @property
    def class_names(self) -> List[str]:
        """Foreground class names in output-channel order (channel 0 is background)."""
        return label_names(self.dataset_json)

    @property
    def backbone(self) -> str:
        return self.plans.get("suprem", {}).get("backbone", "nnunet")

    @property
    def mirroring(self):
        """The left-right mirroring decision its plans record (planning/mirroring.MirroringPlan), or None."""
        return recorded(self.plans)


def read_trained_model(path: Union[str, Path], map_location="cpu") -> TrainedModel:
    """Load a checkpoint file, or the best available checkpoint of a model folder."""
    ckpt_path = find_checkpoint(path)
    ckpt = load_training_checkpoint(ckpt_path, map_location)
    try:
        init = ckpt["init_args"]
        model = TrainedModel(ckpt_path, ckpt["network_weights"], dict(init["plans"]), dict(init["dataset_json"]),
                             init["configuration"], ckpt.get("trainer_name", "nnUNetTrainer"),
                             ckpt.get("inference_allowed_mirroring_axes"))
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{ckpt_path}: not an nnU-Net / suprem-nnunet training checkpoint (missing {e})") from None
    model.plans.pop("continue_training", None)
    return model


def build_trained_network(model: TrainedModel) -> torch.nn.Module:
    """The model's network (deep supervision off) with its weights loaded; CheckpointError naming the
    checkpoint when the weights do not fit the network its own plans describe (a checkpoint of
    another architecture, edited plans)."""
    pm = PlansManager(model.plans)
    cm = pm.get_configuration(model.configuration)
    n_in = determine_num_input_channels(pm, cm, model.dataset_json)
    n_out = pm.get_label_manager(model.dataset_json).num_segmentation_heads
    net = nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, enable_deep_supervision=False)
    try:
        net.load_state_dict(model.state_dict)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Error(s) in")]
        raise CheckpointError(f"{model.path}: the weights do not fit the {model.backbone} network its plans describe "
                         f"({(lines or [type(e).__name__])[0][:200]})") from None
    return net


def find_checkpoint(path: Union[str, Path], prefer: str = "final") -> Path:
    """A checkpoint file from a file path, a fold folder or a model folder (single fold)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise MissingFileError(f"{p}: no such checkpoint file or model folder")
    folds = [p] if any((p / n).is_file() for n in CHECKPOINT_NAMES) else sorted(p.glob("fold_*"))
    names = sorted(CHECKPOINT_NAMES, key=lambda n: 0 if prefer in n else 1)
    for fold in folds:
        for n in names:
            if (fold / n).is_file():
                return fold / n
    raise MissingFileError(f"{p}: no checkpoint ({', '.join(CHECKPOINT_NAMES)}) in it or its fold_* folders")
