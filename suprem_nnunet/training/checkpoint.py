"""Safe checkpoint loading and the layout of trained-model folders.

A model folder is nnU-Net's: `<results>/<Dataset>/<Trainer>__<plans>__<configuration>/` holding
`plans.json`, `dataset.json` and `fold_<f>/checkpoint_{final,best,latest}.pth`. A checkpoint carries
its own plans and dataset.json (`init_args`), so one file is enough to predict or fine-tune.

Checkpoints are written to `.tmp-<pid>-<name>` in the same folder, flushed to disk and renamed
(`SupremTrainer.save_checkpoint`), so a kill never leaves a truncated file under a checkpoint's
name; resuming still skips a file it cannot read (one written by another tool, a damaged disk).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from ..dataset.raw import label_names
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")
#: candidates for resuming; the one with the most epochs wins, ties in this order
RESUME_NAMES = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
TEMP_PREFIX = ".tmp-"


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> Dict:
    """`torch.load(weights_only=True)` of an nnU-Net-style checkpoint dict; arbitrary pickles are refused."""
    from ..zoo.checkpoint import load_checkpoint as safe_load

    ckpt = safe_load(path, map_location, allow_numpy=True)
    if not isinstance(ckpt, dict):
        raise InputError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def temp_checkpoint_path(path: Union[str, Path]) -> Path:
    """Where `path` is written before it is renamed into place (same folder, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")


def replace_durably(tmp: Path, path: Path) -> None:
    """Flush `tmp` to disk, rename it to `path` (atomic on POSIX) and flush the folder entry."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temp_checkpoints(folder: Union[str, Path]) -> None:
    """Delete temporary checkpoint files a killed run left in a fold folder."""
    for p in Path(folder).glob(f"{TEMP_PREFIX}*-checkpoint_*.pth"):
        log.info("removing %s, left by an interrupted checkpoint write", p)
        p.unlink(missing_ok=True)


def read_resume_checkpoint(folder: Union[str, Path],
                           map_location: Union[str, torch.device] = "cpu") -> Optional[Tuple[Path, Dict]]:
    """(path, checkpoint) to resume training in fold folder `folder` from: among checkpoint_final,
    _latest and _best the readable one with the most epochs (ties: that order); None when there is
    none. A file that cannot be read (truncated, not a checkpoint) is skipped with a warning."""
    best: Optional[Tuple[Path, Dict]] = None
    for name in RESUME_NAMES:
        path = Path(folder) / name
        if not path.is_file():
            continue
        try:
            ckpt = load_checkpoint(path, map_location)
            epoch = int(ckpt["current_epoch"])
        except (ValueError, KeyError, TypeError) as e:  # CheckpointError is a ValueError
            reason = f"no {e} entry" if isinstance(e, KeyError) else (str(e).splitlines() or [type(e).__name__])[0]
            log.warning("%s: skipped for resuming, it cannot be read (%s)", path, reason)
            continue
        if best is None or epoch > int(best[1]["current_epoch"]):
            best = (path, ckpt)
    return best


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
        from ..planning.mirroring import recorded

        return recorded(self.plans)


def read_trained_model(path: Union[str, Path], map_location="cpu") -> TrainedModel:
    """Load a checkpoint file, or the best available checkpoint of a model folder."""
    ckpt_path = find_checkpoint(path)
    ckpt = load_checkpoint(ckpt_path, map_location)
    try:
        init = ckpt["init_args"]
        model = TrainedModel(ckpt_path, ckpt["network_weights"], dict(init["plans"]), dict(init["dataset_json"]),
                             init["configuration"], ckpt.get("trainer_name", "nnUNetTrainer"),
                             ckpt.get("inference_allowed_mirroring_axes"))
    except (KeyError, TypeError) as e:
        raise InputError(f"{ckpt_path}: not an nnU-Net / suprem-nnunet training checkpoint (missing {e})") from None
    model.plans.pop("continue_training", None)
    return model


def build_trained_network(model: TrainedModel) -> torch.nn.Module:
    """The model's network (deep supervision off) with its weights loaded; ValueError naming the
    checkpoint when the weights do not fit the network its own plans describe (a checkpoint of
    another architecture, edited plans)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(model.plans)
    cm = pm.get_configuration(model.configuration)
    n_in = determine_num_input_channels(pm, cm, model.dataset_json)
    n_out = pm.get_label_manager(model.dataset_json).num_segmentation_heads
    net = nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, enable_deep_supervision=False)
    try:
        net.load_state_dict(model.state_dict)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Error(s) in")]
        raise InputError(f"{model.path}: the weights do not fit the {model.backbone} network its plans describe "
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
