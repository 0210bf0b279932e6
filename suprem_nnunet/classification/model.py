"""Pre-trained encoder + classification head, and the classifier checkpoint.

Design: the classifier is the whole segmentation network of the pre-trained checkpoint (built from
its plans, or from the adapter of a zoo release) of which only the encoder runs. A case enters as
one patch of the plans' patch size centred on its region of interest (the pancreas and its lesion,
see `preprocess.py`); the deepest encoder feature map, taken before its block's last normalisation
(`encoder.encoder_features(pre_norm=True)`: an instance norm right before pooling would set every
channel's patch mean to its bias), is pooled over the whole patch by mean and by max (a small
lesion shows in the max), the two vectors are concatenated (2C values) and a dropout + linear head
gives one logit per class (`none` and the sub-types), trained with cross-entropy.
`--from-scratch` builds the same network from the same plans with random weights.

The checkpoint (`classifier.pth`) is a plain dict readable with `torch.load(weights_only=True)`:
`format`, `classes`, `backbone`, `encoder` (how to rebuild the network and the preprocessing:
`plans` + `configuration` + `dataset_json` for our models, `arch_kwargs` + `preset` for releases,
and the pre-trained `source`), `patch_size`, `feature_channels`, `state_dict`, `info` (run info,
with `input`: the intensity window, fill value, ROI masking and margin the classifier was trained
with, which prediction repeats).
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..networks.registry import get_backbone
from .encoder import encoder_features, load_encoder_weights
from ..training.finetune import load_pretrained
from ..networks import network_class
from ..networks.checkpoint import replace_durably, temp_checkpoint_path, load_training_checkpoint
from ..zoo.predict import SUPREM_PREPROCESSING
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "suprem_classifier/2"
CHECKPOINT_NAME = "classifier.pth"
PathLike = Union[str, Path]


@dataclass
class EncoderSpec:
    """Everything that rebuilds the pre-trained network (without weights) and its preprocessing."""

    backbone: str
    source: str  # the pre-trained checkpoint / zoo name the encoder came from
    plans: Optional[dict] = None  # our own models: nnU-Net plans, configuration and dataset.json
    configuration: Optional[str] = None
    dataset_json: Optional[dict] = None
    arch_kwargs: Dict = field(default_factory=dict)  # zoo releases: adapter kwargs; preprocessing = SuPreM preset

    @property
    def default_patch(self) -> Tuple[int, ...]:
        if self.plans is not None:
            return tuple(int(v) for v in self.plans["configurations"][self.configuration]["patch_size"])

        return tuple(int(v) for v in SUPREM_PREPROCESSING.get("roi_size", (96, 96, 96)))

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "source": self.source, "plans": self.plans,
                "configuration": self.configuration, "dataset_json": self.dataset_json,
                "arch_kwargs": dict(self.arch_kwargs)}

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderSpec":
        return cls(d["backbone"], d["source"], d.get("plans"), d.get("configuration"), d.get("dataset_json"),
                   dict(d.get("arch_kwargs") or {}))


def pretrained_encoder(spec: Optional[str], configuration: str = "3d_fullres"):
    """(EncoderSpec, state_dict) of a pre-trained checkpoint: a file or model folder of ours, a zoo
    name or a released checkpoint file, or None / 'latest' for the most recent pre-training run
    (the same resolution as `suprem_finetune --pretrained`)."""
    src = load_pretrained(spec)
    get_backbone(src.backbone)
    if src.model is not None:
        m = src.model
        if configuration not in m.plans["configurations"]:
            configuration = m.configuration
        enc = EncoderSpec(src.backbone, str(src.path), copy.deepcopy(m.plans), configuration,
                          copy.deepcopy(m.dataset_json))
    else:
        enc = EncoderSpec(src.backbone, str(src.path), arch_kwargs=dict(src.arch_kwargs or {}))
    return enc, src.state_dict


def build_network(spec: EncoderSpec) -> nn.Module:
    """The segmentation network `spec` describes, randomly initialised (deep supervision off)."""
    if spec.plans is not None:
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        pm = PlansManager(spec.plans)
        cm = pm.get_configuration(spec.configuration)
        n_in = determine_num_input_channels(pm, cm, spec.dataset_json)
        n_out = pm.get_label_manager(spec.dataset_json).num_segmentation_heads
        return nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, enable_deep_supervision=False)

    return network_class(spec.backbone)(input_channels=1, num_classes=2, deep_supervision=False, **spec.arch_kwargs)


class SubtypeClassifier(nn.Module):
    """Encoder of a segmentation network + (mean ‖ max) pooling of its pre-normalisation deepest
    features + dropout + linear head."""

    def __init__(self, backbone: str, network: nn.Module, num_classes: int, feature_channels: int,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.network = network
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * feature_channels, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = encoder_features(self.backbone, self.network, x, pre_norm=True)
        return torch.cat([f.mean(dim=(2, 3, 4)), f.amax(dim=(2, 3, 4))], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def encoder_parameters(self) -> List[nn.Parameter]:
        keys = get_backbone(self.backbone).encoder_keys
        return [p for n, p in self.network.named_parameters() if n.startswith(keys)]


def feature_channels(backbone: str, network: nn.Module, patch_size: Sequence[int], in_channels: int = 1) -> int:
    """Channels of the deepest encoder feature map (a dry run on one zero patch)."""
    was = network.training
    network.eval()
    try:
        with torch.no_grad():
            f = encoder_features(backbone, network, torch.zeros(1, in_channels, *patch_size), pre_norm=True)
    finally:
        network.train(was)
    return int(f.shape[1])


def input_channels(spec: EncoderSpec) -> int:
    return len(spec.dataset_json["channel_names"]) if spec.dataset_json is not None else 1


def make_classifier(spec: EncoderSpec, classes: Sequence[str], patch_size: Sequence[int],
                    state_dict: Optional[Dict[str, torch.Tensor]] = None, seed: int = 0) -> SubtypeClassifier:
    """A classifier on `spec`'s network: pre-trained encoder from `state_dict`, or random (None).
    Random weights (network and head) are drawn from `seed`."""
    torch.manual_seed(seed)
    net = build_network(spec)
    if state_dict is not None:
        n = load_encoder_weights(net, spec.backbone, state_dict, spec.source)
        log.info("encoder: %d tensors from %s", n, spec.source)
    c = feature_channels(spec.backbone, net, patch_size, input_channels(spec))
    return SubtypeClassifier(spec.backbone, net, len(classes), c)


def save_classifier(path: PathLike, model: SubtypeClassifier, spec: EncoderSpec, classes: Sequence[str],
                    patch_size: Sequence[int], info: dict) -> Path:
    """The checkpoint described in the module docstring, written to a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"format": CHECKPOINT_FORMAT, "classes": list(classes), "backbone": spec.backbone,
            "encoder": spec.to_dict(), "patch_size": [int(v) for v in patch_size],
            "feature_channels": int(model.head[1].in_features // 2),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "info": info}
    tmp = temp_checkpoint_path(path)
    torch.save(ckpt, tmp)
    replace_durably(tmp, path)
    return path


def find_classifier(path: PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise MissingFileError(f"{p}: no such classifier checkpoint (train one with suprem_classify train)")
    return p


def load_classifier(path: PathLike) -> Tuple[SubtypeClassifier, EncoderSpec, dict]:
    """(model in eval mode, encoder spec, checkpoint dict) of a classifier checkpoint or its folder.
    One-line ValueError when the file is not a classifier or its head does not fit its encoder."""
    p = find_classifier(path)
    ckpt = load_training_checkpoint(p)
    fmt = ckpt.get("format")
    if isinstance(fmt, str) and fmt.startswith("suprem_classifier/") and fmt != CHECKPOINT_FORMAT:
        raise InputError(f"{p}: classifier format {fmt!r}, this version reads {CHECKPOINT_FORMAT!r} (another "
                         "input pipeline and pooling); train it again with suprem_classify train")
    if fmt != CHECKPOINT_FORMAT:
        raise InputError(f"{p}: not a suprem classifier checkpoint (no format {CHECKPOINT_FORMAT!r}); "
                         "segmentation checkpoints go to --pretrained of suprem_classify train")
    spec = EncoderSpec.from_dict(ckpt["encoder"])
    classes = list(ckpt["classes"])
    net = build_network(spec)
    c = feature_channels(spec.backbone, net, ckpt["patch_size"], input_channels(spec))
    head_w = ckpt["state_dict"].get("head.1.weight")
    if head_w is None or tuple(head_w.shape) != (len(classes), 2 * c):
        got = "no head" if head_w is None else f"a head of shape {tuple(head_w.shape)}"
        raise InputError(f"{p}: its encoder gives {c} feature channels ({2 * c} pooled values) for "
                         f"{len(classes)} classes, but the checkpoint holds {got}; the encoder does not fit the head")
    model = SubtypeClassifier(spec.backbone, net, len(classes), c)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise InputError(f"{p}: its weights do not fit the {spec.backbone} network its plans build "
                         f"({first[0].strip()})") from None
    return model.eval(), spec, ckpt
