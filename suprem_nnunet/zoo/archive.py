"""Export / import of our own trained models as one zip.

A trained model folder is nnU-Net's ``<results>/DatasetXXX/<Trainer>__<plans>__<config>/`` with
``plans.json``, ``dataset.json`` and ``fold_<f>/checkpoint_final.pth``. The zip holds::

    model_card.json          backbone, data, preprocessing, metrics, provenance (the training card:
                             stages, sources, licences, most restrictive terms; provenance.py)
    model_card.md            the training card for people (when the fold has one)
    classes.json             output channels in order, "background" first
    plans.json, dataset.json
    fold_<f>/checkpoint_final.pth   network weights + what nnU-Net's predictor reads (no optimizer)

Importing unpacks it into the zoo store as ``models/<name>/<Trainer>__<plans>__<config>/``, a folder
nnU-Net's predictor (and ``read_trained_model``) accepts as is.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch

from .. import __version__
from ..dataset.raw import label_names
from ..networks.registry import backbone_for_class
from ..networks.checkpoint import CheckpointError, load_checkpoint
from .provenance import find_card, render_markdown
from .store import ZooError, model_folder, read_index, store_root, write_index
from .weights import PretrainedWeights
from .store import sha256_file

PathLike = Union[str, Path]
ARCHIVE_FORMAT = "suprem-nnunet-model/1"
#: an archive may expand to at most this multiple of its size (checkpoints barely compress: about 1.1x)
MAX_EXPANSION = 100
_REQUIRED = ("model_card.json", "classes.json", "plans.json", "dataset.json")


def _read_json(p: Path) -> Dict:
    if not p.is_file():
        raise ZooError(f"{p}: missing")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ZooError(f"{p}: invalid JSON ({e})") from None


def _parse_folder_name(model_dir: Path) -> Dict[str, str]:
    parts = model_dir.name.split("__")
    if len(parts) != 3:
        raise ZooError(f"{model_dir}: not an nnU-Net model folder (expected <Trainer>__<plans>__<configuration>)")
    return {"trainer": parts[0], "plans": parts[1], "configuration": parts[2]}


def _backbone(plans: Dict, configuration: str) -> str:
    name = plans.get("suprem", {}).get("backbone")
    if name:
        return name
    arch = plans.get("configurations", {}).get(configuration, {}).get("architecture", {})
    b = backbone_for_class(arch.get("network_class_name", ""))
    return b.name if b else "nnunet"


def _metrics(fold_dir: Path) -> Optional[Dict]:
    p = fold_dir / "validation" / "summary.json"
    if not p.is_file():
        return None
    s = json.loads(p.read_text())
    fg = s.get("foreground_mean", {})
    return {"validation_dice_foreground_mean": fg.get("Dice"),
            "per_class_dice": {k: v.get("Dice") for k, v in s.get("mean", {}).items()},
            "source": str(p.name)}


def model_card(model_dir: Path, plans: Dict, dataset_json: Dict, fold: str, epochs: Optional[int],
               extra: Optional[Dict] = None) -> Dict:
    """The card describing a trained model (backbone, data, preprocessing, metrics)."""
    info = _parse_folder_name(model_dir)
    cfg = plans.get("configurations", {}).get(info["configuration"], {})
    card = {
        "format": ARCHIVE_FORMAT,
        "backbone": _backbone(plans, info["configuration"]),
        "trainer": info["trainer"], "plans": info["plans"], "configuration": info["configuration"],
        "fold": fold,
        "classes": ["background"] + label_names(dataset_json),
        "data": {"dataset": plans.get("dataset_name") or model_dir.parent.name,
                 "num_training_cases": dataset_json.get("numTraining"),
                 "channel_names": dataset_json.get("channel_names")},
        "preprocessing": {"preset": plans.get("suprem", {}).get("preset"),
                          "spacing": cfg.get("spacing"), "patch_size": cfg.get("patch_size"),
                          "normalization": cfg.get("normalization_schemes"),
                          "intensity": plans.get("suprem", {}).get("intensity")},
        "architecture": cfg.get("architecture"),
        "pretrained": plans.get("suprem", {}).get("pretrain"),
        "epochs": epochs,
        "metrics": _metrics(model_dir / f"fold_{fold}"),
        "provenance": find_card(model_dir / f"fold_{fold}"),
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suprem_nnunet_version": __version__,
    }
    card.update(extra or {})
    return card


def export_model(model_dir: PathLike, output_zip: PathLike, fold: str = "all",
                 checkpoint_name: str = "checkpoint_final.pth", card_extra: Optional[Dict] = None) -> Path:
    """Write `model_dir` (an nnU-Net model folder) as a zip; returns the zip path."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ZooError(f"{model_dir}: model folder not found")
    info = _parse_folder_name(model_dir)
    plans = _read_json(model_dir / "plans.json")
    dataset_json = _read_json(model_dir / "dataset.json")
    ckpt_path = model_dir / f"fold_{fold}" / checkpoint_name
    ckpt = load_checkpoint(ckpt_path, "cpu", allow_numpy=True)
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        raise CheckpointError(f"{ckpt_path}: not an nnU-Net training checkpoint (no network_weights)")
    init = ckpt.get("init_args") or {}
    mirror = ckpt.get("inference_allowed_mirroring_axes")
    slim = {"network_weights": {k: v for k, v in ckpt["network_weights"].items()},
            "trainer_name": str(ckpt.get("trainer_name", info["trainer"])),
            "init_args": {"configuration": str(init.get("configuration", info["configuration"])),
                          "fold": str(fold), "plans": plans, "dataset_json": dataset_json},
            "inference_allowed_mirroring_axes": None if mirror is None else tuple(int(a) for a in mirror),
            "current_epoch": int(ckpt.get("current_epoch", 0))}
    card = model_card(model_dir, plans, dataset_json, fold, slim["current_epoch"], card_extra)
    buf = io.BytesIO()
    torch.save(slim, buf)
    out = Path(output_zip)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model_card.json", json.dumps(card, indent=1))
        z.writestr("classes.json", json.dumps(card["classes"], indent=1))
        z.writestr("plans.json", json.dumps(plans, indent=1))
        z.writestr("dataset.json", json.dumps(dataset_json, indent=1))
        if card["provenance"] is not None:
            z.writestr("model_card.md", render_markdown(card["provenance"]))
        z.writestr(f"fold_{fold}/checkpoint_final.pth", buf.getvalue())
    return out


def import_model(zip_path: PathLike, name: str, overwrite: bool = False) -> Dict:
    """Unpack an exported model into the zoo store under `name`; returns its index record."""
    src = Path(zip_path)
    if not src.is_file():
        raise ZooError(f"{src}: file not found")
    if not zipfile.is_zipfile(src):
        raise ZooError(f"{src}: not a zip archive")
    idx = read_index()
    if (name in idx["models"] or name in idx["checkpoints"]) and not overwrite:
        raise ZooError(f"{name!r} is already in the zoo store {store_root()}; pass overwrite to replace it")
    with zipfile.ZipFile(src) as z:
        members = z.namelist()
        missing = [m for m in _REQUIRED if m not in members]
        ckpts = [m for m in members if m.startswith("fold_") and m.endswith("/checkpoint_final.pth")]
        if missing or len(ckpts) != 1:
            raise ZooError(f"{src}: not an exported suprem-nnunet model (missing "
                           f"{missing or ['fold_*/checkpoint_final.pth']})")
        bad = [m for m in members if m.startswith("/") or ".." in Path(m).parts]
        if bad:
            raise ZooError(f"{src}: unsafe path {bad[0]!r} in archive")
        expanded = sum(i.file_size for i in z.infolist())
        if expanded > MAX_EXPANSION * max(src.stat().st_size, 1):
            raise ZooError(f"{src}: the archive would expand to {expanded} bytes, "
                           f"{expanded / max(src.stat().st_size, 1):.0f}x its size (limit {MAX_EXPANSION}x); "
                           "refused as a possible zip bomb")
        card = json.loads(z.read("model_card.json"))
        if card.get("format") != ARCHIVE_FORMAT:
            raise ZooError(f"{src}: unknown model archive format {card.get('format')!r}")
        folder = f"{card['trainer']}__{card['plans']}__{card['configuration']}"
        dest = store_root() / "models" / name / folder
        tmp = Path(tempfile.mkdtemp(dir=store_root(), prefix=".import."))
        try:
            z.extractall(tmp)
            load_checkpoint(tmp / ckpts[0], "cpu")  # refuse anything but tensors and plain data
            if dest.parent.exists():
                shutil.rmtree(dest.parent)
            dest.parent.mkdir(parents=True)
            shutil.move(str(tmp), str(dest))
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    rec = {"folder": str(dest.relative_to(store_root())), "sha256": sha256_file(src),
           "backbone": card.get("backbone"), "classes": card.get("classes"), "source": str(src.resolve()),
           "imported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    idx["models"][name] = rec
    write_index(idx)
    return rec


def read_model_card(name: str) -> Dict:
    return _read_json(model_folder(name) / "model_card.json")


def pretrained_from_model(name: str, map_location: Union[str, torch.device] = "cpu"):
    """`PretrainedWeights` of an imported exported model (plain head kept, background first)."""
    folder = model_folder(name)
    card = read_model_card(name)
    ckpt_files = sorted(folder.glob("fold_*/checkpoint_final.pth"))
    if not ckpt_files:
        raise ZooError(f"{folder}: no fold_*/checkpoint_final.pth")
    ckpt = load_checkpoint(ckpt_files[0], map_location)
    arch = (card.get("architecture") or {}).get("arch_kwargs", {})
    classes: List[str] = list(card["classes"])
    return PretrainedWeights(backbone=card["backbone"], state_dict=dict(ckpt["network_weights"]),
                             class_names=classes, arch_kwargs=dict(arch), source=str(ckpt_files[0]),
                             layout="ours")
