"""Released checkpoints -> our networks: direct inference (`load_released`) and fine-tuning weights
(`resolve_pretrained`)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ..labels import canonical
from ..networks import get_backbone, network_class
from .catalog import CatalogEntry, catalog, entry_for_file
from ..networks.checkpoint import CheckpointError, StateDict, load_state_dict_file
from .convert import detect_layout, load_matching, match_state_dict, to_adapter_keys
from .archive import pretrained_from_model
from .store import ZooError, checkpoint_path, read_index
from .weights import PretrainedWeights
from .catalog import _raw
from ..networks.universal import UniversalModel
from ..errors import InputError

PathLike = Union[str, Path]


def universal_template_classes() -> Tuple[str, ...]:
    """Unified names of the Universal Model's 32-class template, in output-channel order."""
    return tuple(canonical(n) for n in _raw()["class_orders"]["universal_template"]["classes"])


def resolve_checkpoint(name_or_path: PathLike) -> Tuple[Path, Optional[CatalogEntry]]:
    """A file path, or an imported zoo name -> (file, its catalog entry if known)."""
    p = Path(name_or_path)
    if p.is_file():
        return p, entry_for_file(p.name)
    name = str(name_or_path)
    if name in read_index()["models"]:
        raise ZooError(f"{name!r} is an exported model, not a checkpoint file; use its model folder")
    path = checkpoint_path(name)
    rec = read_index()["checkpoints"][name]
    cat_name = rec.get("catalog")
    return path, (catalog()[cat_name] if cat_name in catalog() else entry_for_file(path.name))


def _infer_arch(backbone: str, sd: StateDict, entry: Optional[CatalogEntry]) -> Dict:
    """Arch kwargs of the adapter that holds `sd` (widths read from tensors, the rest defaults)."""
    kw = dict(get_backbone(backbone).default_arch_kwargs)
    if entry is not None and entry.backbone == backbone:
        kw.update(entry.arch_kwargs)
    if backbone == "unet" and "down_tr64.ops.0.conv1.weight" in sd:
        kw["base_features"] = int(sd["down_tr64.ops.0.conv1.weight"].shape[0])
    elif backbone == "swinunetr" and "swinViT.patch_embed.proj.weight" in sd:
        kw["feature_size"] = int(sd["swinViT.patch_embed.proj.weight"].shape[0])
        depths = [len({k.split(".")[4] for k in sd if k.startswith(f"swinViT.layers{i}.0.blocks.")})
                  for i in range(1, 5)]
        if all(depths) and depths != [2, 2, 2, 2]:
            kw["depths"] = depths
        table = sd.get("swinViT.layers1.0.blocks.0.attn.relative_position_bias_table")
        if table is not None:
            window = int(round((round(table.shape[0] ** (1 / 3)) + 1) / 2))
            if window != 7:
                kw["window_size"] = window
    elif backbone == "segresnet" and "convInit.conv.weight" in sd:
        kw["init_filters"] = int(sd["convInit.conv.weight"].shape[0])
    return kw


def _backbone_of(sd: StateDict) -> str:
    """Backbone of a state dict already in our adapter key names."""
    keys = list(sd)
    for prefix, name in (("down_tr64.", "unet"), ("swinViT.", "swinunetr"), ("convInit.", "segresnet")):
        if any(k.startswith(prefix) for k in keys):
            return name
    raise InputError("cannot tell which backbone this state dict belongs to")


def _input_channels(backbone: str, sd: StateDict) -> int:
    key = {"unet": "down_tr64.ops.0.conv1.weight", "segresnet": "convInit.conv.weight",
           "swinunetr": "swinViT.patch_embed.proj.weight"}[backbone]
    return int(sd[key].shape[1]) if key in sd else 1


def _head_classes(backbone: str, sd: StateDict) -> Optional[int]:
    w = sd.get(get_backbone(backbone).head_keys[0] + "weight")
    return None if w is None else int(w.shape[0])


def build_adapter(backbone: str, num_classes: int, input_channels: int = 1, **arch_kwargs) -> nn.Module:
    """Our adapter for `backbone` (deep supervision off)."""
    return network_class(backbone)(input_channels=input_channels, num_classes=num_classes,
                                   deep_supervision=False, **arch_kwargs)


def load_released(name_or_path: PathLike, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """A network that reproduces a released checkpoint's logits on a SuPreM-preprocessed input.

    Universal-layout files (SuPreM U-Net / Swin, CLIP-driven Universal Model) give a
    `UniversalModel`; the SegResNet release gives our SegResNet adapter. Output: (B, K, D, H, W)
    logits, one sigmoid per class. The module carries ``class_names`` (unified names or
    ``class_<k>`` where the order is unknown), ``output_activation`` and ``source``. Every tensor
    of the network must load, else CheckpointError.
    """
    path, entry = resolve_checkpoint(name_or_path)
    raw = load_state_dict_file(path, map_location)
    layout = detect_layout(raw)
    if layout in ("models_genesis", "swin_ssl"):
        raise CheckpointError(f"{path}: a {layout} checkpoint has no segmentation head for direct "
                              f"inference; use it for fine-tuning (resolve_pretrained)")
    adapter_sd, head_sd = to_adapter_keys(raw, layout)
    backbone = _backbone_of(adapter_sd)
    arch = _infer_arch(backbone, adapter_sd, entry)
    in_ch = _input_channels(backbone, adapter_sd)
    if layout == "universal":
        k = int(head_sd["organ_embedding"].shape[0])
        model: nn.Module = UniversalModel(build_adapter(backbone, 1, in_ch, **arch), num_classes=k)
        source = {**{"backbone." + n: v for n, v in adapter_sd.items()}, **head_sd}
    else:
        k = _head_classes(backbone, adapter_sd)
        if k is None:
            raise CheckpointError(f"{path}: no class head ({get_backbone(backbone).head_keys[0]}*) found")
        model = build_adapter(backbone, k, in_ch, **arch)
        source = adapter_sd
    load_matching(model, source, str(path), require_prefixes=("",))
    names = list(entry.classes) if entry is not None and entry.classes and len(entry.classes) == k else None
    if names is None and layout == "universal" and k == len(universal_template_classes()):
        names = list(universal_template_classes())  # all known universal releases use the template
    model.class_names = names or [f"class_{i + 1}" for i in range(k)]
    model.class_names_known = names is not None
    model.output_activation = "softmax" if layout == "ours" else "sigmoid"
    model.source = str(path)
    model.backbone_name = backbone
    model.arch_kwargs = arch
    return model.to(map_location).eval()


def resolve_pretrained(name_or_path: PathLike, map_location: Union[str, torch.device] = "cpu"
                       ) -> PretrainedWeights:
    """Weights for fine-tuning from a zoo name, an imported exported model, or a checkpoint file.

    Universal-Model heads, the Models Genesis restoration head and SSL projection heads are not
    plain class heads: they are dropped (class_names None). A SegResNet head is kept only when the
    catalog knows its class order. Exported models keep their head with background first.
    """
    name = str(name_or_path)
    if not Path(name).is_file() and name in read_index()["models"]:
        return pretrained_from_model(name, map_location)
    path, entry = resolve_checkpoint(name_or_path)
    raw = load_state_dict_file(path, map_location)
    layout = detect_layout(raw)
    sd, _ = to_adapter_keys(raw, layout)
    backbone = _backbone_of(sd)
    arch = _infer_arch(backbone, sd, entry)
    head_keys = get_backbone(backbone).head_keys
    k = _head_classes(backbone, sd)
    class_names: Optional[List[str]] = None
    if k is not None and entry is not None and entry.classes and len(entry.classes) == k:
        class_names = list(entry.classes)
    if class_names is None:
        sd = {n: v for n, v in sd.items() if not n.startswith(head_keys)}
    # check names and shapes against the adapter the lead will build
    ref = build_adapter(backbone, k or 2, _input_channels(backbone, sd), **arch).state_dict()
    matched, rep = match_state_dict(ref, sd, skip_prefixes=() if class_names else head_keys)
    if not matched:
        raise CheckpointError(f"{path}: no tensor matches the {backbone} adapter by name and shape")
    return PretrainedWeights(backbone=backbone, state_dict=matched, class_names=class_names,
                             arch_kwargs=arch, source=str(path), layout=layout, report=rep)


def canonical_class_names(names: List[str]) -> List[str]:
    """Unified names, keeping a leading 'background' as is."""
    return [n if n.lower() == "background" else canonical(n) for n in names]
