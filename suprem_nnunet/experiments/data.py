"""The data a protocol needs, checked before the first run: phantom datasets (built on first use at
--scale phantom), converted datasets and imported zoo models (at --scale full, each missing one is
named with the command that makes it), and sweep values no larger than the dataset."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .. import paths
from .protocol import PROTOCOL_DIR, Protocol, ProtocolError, Scale
from dataset_conversion.registry import SOURCES
from ..networks.registry import get_backbone
from ..zoo.catalog import catalog
from ..zoo.store import read_index
from ..synth.dataset import make_phantom_dataset, make_subtype_dataset

log = logging.getLogger(__name__)
PHANTOM_FILE = "phantom_datasets.json"


@dataclass(frozen=True)
class PhantomSpec:
    dataset: int
    name: str
    classes: Tuple[str, ...]
    num_train: int
    num_test: int
    seed: int
    shape: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    orientation: str = "LPS"
    #: pancreatic-lesion sub-type phantoms (suprem_classify make-phantoms): the lesions labelled as
    #: their sub-type ("subtype", with case_labels.csv) or as pancreas_tumor ("tumor"); None: plain phantoms
    subtypes_as: Optional[str] = None
    difficulty: float = 0.5


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as the runner uses it: full nnU-Net name and its numbers of cases."""

    dataset: int
    name: str  # DatasetNNN_Name
    num_train: int
    num_test: int

    @property
    def short(self) -> str:
        return self.name.split("_", 1)[1] if "_" in self.name else self.name


def phantom_specs() -> Dict[int, PhantomSpec]:
    """The phantom datasets shipped with the protocols, by id."""
    path = resources.files(__package__) / PROTOCOL_DIR / PHANTOM_FILE
    data = json.loads(path.read_text())
    out = {}
    for k, d in data["datasets"].items():
        out[int(k)] = PhantomSpec(int(k), d["name"], tuple(d["classes"]), int(d["num_train"]), int(d["num_test"]),
                                  int(d["seed"]), tuple(d.get("shape", data["shape"])),
                                  tuple(float(v) for v in d.get("spacing", data["spacing"])),
                                  d.get("orientation", "LPS"), d.get("subtypes_as"), float(d.get("difficulty", 0.5)))
    return out


#: files whose bytes shape a run; the image and label files count by name and size
_DIGEST_FILES = ("dataset.json", "annotated_classes.json", "case_labels.csv")
_DIGEST_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")


def dataset_digest(dataset_id: int, scale_name: str) -> str:
    """A digest of what a run sees of dataset `dataset_id`: at phantom scale the shipped phantom
    spec; at both scales the bytes of dataset.json, annotated_classes.json and case_labels.csv and the
    name and size of every file in imagesTr/labelsTr/imagesTs/labelsTs (sizes rather than bytes, so
    that resuming a sweep over a large dataset does not read it all again). 'absent' parts when the
    folder does not exist yet."""
    h = hashlib.sha256()
    if scale_name == "phantom" and dataset_id in phantom_specs():
        h.update(json.dumps(asdict(phantom_specs()[dataset_id]), sort_keys=True).encode())
    folder = find_raw_dataset(dataset_id)
    if folder is None:
        h.update(b"absent")
        return h.hexdigest()[:16]
    for name in _DIGEST_FILES:
        f = folder / name
        h.update(name.encode() + (f.read_bytes() if f.is_file() else b"absent"))
    for sub in _DIGEST_FOLDERS:
        d = folder / sub
        if d.is_dir():
            for f in sorted(d.iterdir()):
                h.update(f"{sub}/{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def find_raw_dataset(dataset_id: int) -> Optional[Path]:
    found = sorted(paths.raw_root().glob(f"Dataset{dataset_id:03d}_*"))
    return found[0] if found and (found[0] / "dataset.json").is_file() else None


def _count(folder: Path, sub: str) -> int:
    d = folder / sub
    return len([p for p in d.iterdir() if p.name.endswith(".nii.gz")]) if d.is_dir() else 0


def _convert_hint(protocol: Protocol, scale: Scale, dataset_id: int) -> str:
    target = next((t for t in scale.targets if t.dataset == dataset_id), None)
    key = target.convert if target and target.convert else next(
        (k for k, s in SOURCES.items() if s.default_id == dataset_id), None)
    if key is None:
        return f"make it with suprem_convert (see suprem_convert --list) as -d {dataset_id}"
    opts = f" {target.options}" if target and target.options else ""
    return f"make it with `suprem_convert {key} /path/to/{key} -d {dataset_id}{opts}`"


def check_data(protocol: Protocol, scale_name: str) -> Dict[int, DatasetInfo]:
    """Every dataset, zoo model and sweep value of the scale, checked before anything runs.

    Phantom scale: every dataset id must be a shipped phantom dataset (they are built later, by
    `ensure_phantoms`). Full scale: every dataset must exist under nnUNet_raw and every zoo model
    must be imported. Raises ProtocolError (one line) naming the first problem and how to fix it.
    """
    scale = protocol.scale(scale_name)
    try:
        get_backbone(scale.backbone)
    except (KeyError, ValueError) as e:
        raise ProtocolError(f"{protocol.file}: scales.{scale_name}.backbone: {e}") from None
    ids = [t.dataset for t in scale.targets] + [p.dataset for p in scale.pretrainings if p.dataset is not None]
    classification = protocol.design == "classification"
    infos: Dict[int, DatasetInfo] = {}
    where = f"{protocol.file}: scales.{scale_name}"
    if scale_name == "phantom":
        specs = phantom_specs()
        for i in ids:
            if i not in specs:
                raise ProtocolError(f"{where}: unknown dataset {i}; phantom datasets: "
                                    f"{', '.join(str(k) for k in specs)}")
            s = specs[i]
            if classification and i in [t.dataset for t in scale.targets] and s.subtypes_as != "subtype":
                raise ProtocolError(f"{where}: target dataset {i} has no sub-type labels; a classification "
                                    "target is a phantom dataset with \"subtypes_as\": \"subtype\"")
            infos[i] = DatasetInfo(i, f"Dataset{i:03d}_{s.name}", s.num_train, s.num_test)
    else:
        for i in ids:
            folder = find_raw_dataset(i)
            target = i in [t.dataset for t in scale.targets]
            if folder is None and classification and target:
                raise ProtocolError(f"{where}: dataset {i} is missing under {paths.raw_root()}; bring your CTs "
                                    f"as an nnU-Net raw dataset -d {i} with labels and case_labels.csv "
                                    f"(case,subtype), or make phantoms with `suprem_classify make-phantoms -d {i}`")
            if folder is None:
                raise ProtocolError(f"{where}: dataset {i} is missing under {paths.raw_root()}; "
                                    f"{_convert_hint(protocol, scale, i)}")
            if classification and target and not (folder / "case_labels.csv").is_file():
                raise ProtocolError(f"{folder / 'case_labels.csv'}: missing; a classification target needs "
                                    "its case labels (case,subtype)")
            infos[i] = DatasetInfo(i, folder.name, _count(folder, "imagesTr"), _count(folder, "labelsTs"))
        _check_zoo(scale, where)
    for t in scale.targets:
        info = infos[t.dataset]
        if info.num_test < 1:
            raise ProtocolError(f"{where}: target dataset {info.name} has no labelled test cases (labelsTs)")
        for n in scale.sweep:
            if protocol.design != "pretrain_scale" and n is not None and n > info.num_train:
                raise ProtocolError(f"{where}.sweep: {protocol.setting_name} = {n} but {info.name} has only "
                                    f"{info.num_train} training cases")
    for p in scale.pretrainings:
        if p.dataset is None:
            continue
        info = infos[p.dataset]
        sizes = ([p.num_cases] if p.num_cases else []) + (list(scale.sweep) if protocol.design == "pretrain_scale"
                                                         else [])
        for n in sizes:
            if n > info.num_train:
                raise ProtocolError(f"{where}: pre-training {p.key} on {n} cases but {info.name} has only "
                                    f"{info.num_train} training cases")
    return infos


def _check_zoo(scale: Scale, where: str) -> None:

    index = read_index()
    for p in scale.pretrainings:
        if p.zoo is None:
            continue
        if p.zoo in index["models"] or p.zoo in index["checkpoints"]:
            continue
        entries = catalog()
        if p.zoo not in entries:
            known = sorted(set(entries) | set(index["models"]) | set(index["checkpoints"]))
            raise ProtocolError(f"{where}.pretrainings.{p.key}: unknown zoo model {p.zoo!r} (known: {', '.join(known)})")
        raise ProtocolError(f"{where}.pretrainings.{p.key}: zoo model {p.zoo} is not imported; download "
                            f"{entries[p.zoo].file} and run `suprem_zoo import {entries[p.zoo].file} --name {p.zoo}`")


def check_zoo_names(protocol: Protocol) -> None:
    """Zoo names in every scale must be catalog entries or imported models (no data needed)."""

    index = read_index()
    known = set(catalog()) | set(index["models"]) | set(index["checkpoints"])
    for sname, scale in protocol.scales:
        for p in scale.pretrainings:
            if p.zoo is not None and p.zoo not in known:
                raise ProtocolError(f"{protocol.file}: scales.{sname}.pretrainings.{p.key}: unknown zoo model "
                                    f"{p.zoo!r} (known: {', '.join(sorted(known))})")


def ensure_phantoms(ids: List[int]) -> None:
    """Write the phantom datasets that are not complete yet (dataset.json is written last)."""
    specs = phantom_specs()
    for i in ids:
        if find_raw_dataset(i) is not None:
            continue
        s = specs[i]
        log.info("building phantom dataset %d (%s: %d train, %d test)", i, s.name, s.num_train, s.num_test)
        if s.subtypes_as is not None:
            make_subtype_dataset(i, s.name, s.num_train, s.num_test, s.difficulty, s.subtypes_as, s.shape,
                                 s.spacing, s.seed, progress=False)
            continue
        make_phantom_dataset(i, s.name, s.classes, s.num_train, s.num_test, shape=s.shape, spacing=s.spacing,
                             orientation=s.orientation, seed=s.seed, progress=False)
