"""Experiment protocols: one JSON file per paper result, loaded into frozen dataclasses and checked
before anything runs.

A protocol names a *design* (what varies), its arms, the statistics and, per scale (`phantom`,
`full`), the pre-trainings, the target datasets, the sweep values, the number of trials and the
training budget. This module checks the file on its own (fields, names, cross-references); whether
the datasets and zoo models exist is checked by `data.check_data` before the first run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from ..training.base import TrainingBudget

from ..errors import InputError

#: what a protocol varies; each design has its own sweep meaning, table and figure (report.py)
DESIGNS: Dict[str, str] = {
    "arms": "arms at one few-shot size, per class",
    "few_shot": "number of few-shot target cases",
    "target_size": "number of annotated target cases",
    "pretrain_scale": "number of pre-training cases",
    "ood": "direct inference on external datasets vs models trained on each",
    "novel_groups": "targets with novel classes only, per class group",
    "learning_curve": "validation DSC per epoch; time to reach the baseline's final DSC",
    "classification": "case-level tumour sub-type classification from the (pre-trained) encoder; AUC per sub-type",
}
#: statistics a design may use
STATISTICS = {"arms": "two_sample", "few_shot": "two_sample", "target_size": "two_sample",
              "pretrain_scale": "none", "ood": "one_sample", "novel_groups": "two_sample",
              "learning_curve": "time_to_target", "classification": "two_sample"}
#: what the sweep values of a design count
SETTING_NAMES = {"arms": "num_train_cases", "few_shot": "num_train_cases", "target_size": "num_train_cases",
                 "pretrain_scale": "pretrain_cases", "ood": "dataset", "novel_groups": "num_train_cases",
                 "learning_curve": "num_train_cases", "classification": "num_train_cases"}
INITS = ("scratch", "pretrained", "direct")  # direct: predict with the pre-trained model, no training
SCALES = ("phantom", "full")
OPTIMIZERS = ("sgd", "adamw")
PROTOCOL_DIR = "protocols"


class ProtocolError(InputError):
    """A protocol that cannot run; the message is one line naming the file and the field."""


@dataclass(frozen=True)
class Budget:
    """Training length of one run (pre-training or fine-tuning)."""

    epochs: int
    iterations_per_epoch: int
    val_iterations: int = 2
    lr: Optional[float] = None
    optimizer: str = "adamw"

    def training_budget(self):
        # checkpoint_latest only at the end: an interrupted run restarts from nothing (runner.py)
        return TrainingBudget(self.epochs, self.iterations_per_epoch, self.val_iterations, self.lr, self.epochs,
                              self.optimizer)


@dataclass(frozen=True)
class Caps:
    """Planning caps (see planning.PlanningCaps); all None keeps nnU-Net's own plan."""

    max_patch: Optional[Tuple[int, int, int]] = None
    base_features: Optional[int] = None
    max_features: Optional[int] = None
    batch_size: Optional[int] = None


@dataclass(frozen=True)
class Pretraining:
    """Weights an arm starts from: our own pre-training on `dataset` (optionally its first
    `num_cases` training cases) with `budget`, or an imported zoo model `zoo`."""

    key: str
    dataset: Optional[int] = None
    zoo: Optional[str] = None
    num_cases: Optional[int] = None
    budget: Optional[Budget] = None


@dataclass(frozen=True)
class Arm:
    name: str
    init: str  # scratch | pretrained | direct
    source: Optional[str] = None  # pre-training key; scratch arms take their plans from it


@dataclass(frozen=True)
class Target:
    """A target dataset by nnU-Net id; `convert` is the `suprem_convert` source that makes it at full
    scale (with `options`, e.g. '--groups muscles'), used in the missing-data message.
    `published_iid` (design ood, optional): published DSC of a model trained on this dataset, per
    class name or 'mean', which table3 tests the per-case OOD DSC against (the paper's test)."""

    dataset: int
    convert: Optional[str] = None
    options: str = ""
    published_iid: Tuple[Tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Scale:
    trials: int
    arms: Tuple[Arm, ...]
    baseline: str
    pretrainings: Tuple[Pretraining, ...]
    targets: Tuple[Target, ...]
    sweep: Tuple[Optional[int], ...]  # None ('all' in the file): every training case
    budget: Budget
    backbone: str = "nnunet"
    caps: Caps = Caps()

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def pretraining(self, key: str) -> Pretraining:
        return next(p for p in self.pretrainings if p.key == key)


@dataclass(frozen=True)
class Protocol:
    name: str
    paper: str
    title: str
    design: str
    statistics: str
    scales: Tuple[Tuple[str, Scale], ...]
    description: str = ""
    file: str = ""

    @property
    def setting_name(self) -> str:
        return SETTING_NAMES[self.design]

    def scale(self, name: str) -> Scale:
        for k, s in self.scales:
            if k == name:
                return s
        raise ProtocolError(f"{self.file}: protocol {self.name} has no scale {name!r} "
                            f"(has: {', '.join(k for k, _ in self.scales)})")


# ---------------------------------------------------------------------------- loading
def protocol_names() -> List[str]:
    """Names of the protocols shipped with the package."""
    folder = resources.files(__package__) / PROTOCOL_DIR
    return sorted(p.name[:-5] for p in folder.iterdir()
                  if p.name.endswith(".json") and not p.name.startswith("phantom_"))


def protocol_file(name_or_path: Union[str, Path]) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".json" and p.is_file():
        return p
    shipped = Path(str(resources.files(__package__) / PROTOCOL_DIR / f"{name_or_path}.json"))
    if not shipped.is_file():
        raise ProtocolError(f"unknown protocol {str(name_or_path)!r}; known: {', '.join(protocol_names())} "
                            "(or a path to a protocol .json file)")
    return shipped


def load_protocol(name_or_path: Union[str, Path]) -> Protocol:
    """Read and check a protocol (a shipped name such as 'table2', or a .json file)."""
    path = protocol_file(name_or_path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ProtocolError(f"{path}: not valid JSON ({e})") from None
    return protocol_from_dict(data, str(path))


def protocol_from_dict(data: Mapping[str, Any], file: str = "<protocol>") -> Protocol:
    """Build and check a Protocol; ProtocolError names the file and the field."""
    def fail(field: str, msg: str):
        raise ProtocolError(f"{file}: {field}: {msg}")

    def obj(cls, d: Any, field: str, **extra):
        if not isinstance(d, Mapping):
            fail(field, f"expected an object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)} - set(extra)
        unknown = sorted(set(d) - names)
        if unknown:
            fail(f"{field}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(names))})")
        return dict(d)

    def integer(v: Any, field: str, minimum: int = 1) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            fail(field, f"expected an integer >= {minimum}, got {v!r}")
        return v

    def need(d: Mapping, key: str, field: str) -> Any:
        if key not in d:
            fail(f"{field}.{key}", "missing")
        return d[key]

    def budget(d: Any, field: str) -> Budget:
        d = obj(Budget, d, field)
        b = Budget(integer(need(d, "epochs", field), f"{field}.epochs"),
                   integer(need(d, "iterations_per_epoch", field), f"{field}.iterations_per_epoch"),
                   integer(d.get("val_iterations", 2), f"{field}.val_iterations"),
                   d.get("lr"), d.get("optimizer", "adamw"))
        if b.optimizer not in OPTIMIZERS:
            fail(f"{field}.optimizer", f"unknown optimizer {b.optimizer!r} (use {' or '.join(OPTIMIZERS)})")
        if b.lr is not None and (not isinstance(b.lr, (int, float)) or b.lr <= 0):
            fail(f"{field}.lr", f"expected a positive number, got {b.lr!r}")
        return b

    top = obj(Protocol, data, "protocol", file=None)
    for key in ("name", "paper", "title", "design", "scales"):
        need(top, key, "protocol")
    design = top["design"]
    if design not in DESIGNS:
        fail("design", f"unknown design {design!r} (known: {', '.join(DESIGNS)})")
    stat = top.get("statistics", STATISTICS[design])
    if stat != STATISTICS[design]:
        fail("statistics", f"design {design} uses {STATISTICS[design]!r}, not {stat!r}")
    scales_in = top["scales"]
    if not isinstance(scales_in, Mapping) or not scales_in:
        fail("scales", "expected an object with 'phantom' and/or 'full'")
    scales = []
    for sname, sd in scales_in.items():
        f = f"scales.{sname}"
        if sname not in SCALES:
            fail(f, f"unknown scale (known: {', '.join(SCALES)})")
        sd = obj(Scale, sd, f)
        for key in ("trials", "arms", "baseline", "pretrainings", "targets", "budget"):
            need(sd, key, f)
        pres = []
        if not isinstance(sd["pretrainings"], Mapping):
            fail(f"{f}.pretrainings", "expected an object {key: {dataset or zoo, ...}}")
        for key, pd in sd["pretrainings"].items():
            pf = f"{f}.pretrainings.{key}"
            pd = obj(Pretraining, pd, pf, key=None)
            if ("dataset" in pd) == ("zoo" in pd):
                fail(pf, "give exactly one of 'dataset' (pre-train it) or 'zoo' (an imported model)")
            if "zoo" in pd and ("num_cases" in pd or "budget" in pd):
                fail(pf, "a zoo model takes no 'num_cases' or 'budget'")
            if "dataset" in pd and "budget" not in pd:
                fail(f"{pf}.budget", "missing (how long to pre-train)")
            pres.append(Pretraining(
                key, integer(pd["dataset"], f"{pf}.dataset") if "dataset" in pd else None, pd.get("zoo"),
                integer(pd["num_cases"], f"{pf}.num_cases") if "num_cases" in pd else None,
                budget(pd["budget"], f"{pf}.budget") if "budget" in pd else None))
        pkeys = [p.key for p in pres]
        if not isinstance(sd["arms"], list) or not sd["arms"]:
            fail(f"{f}.arms", "expected a non-empty list of arms")
        arms = []
        for i, ad in enumerate(sd["arms"]):
            af = f"{f}.arms[{i}]"
            ad = obj(Arm, ad, af)
            arm = Arm(str(need(ad, "name", af)), str(need(ad, "init", af)), ad.get("source"))
            if arm.init not in INITS:
                fail(f"{af}.init", f"unknown init {arm.init!r} (known: {', '.join(INITS)})")
            if arm.source is None and arm.init != "scratch":
                fail(f"{af}.source", f"arm {arm.name!r} ({arm.init}) needs a pre-training key")
            if arm.source is not None and arm.source not in pkeys:
                fail(f"{af}.source", f"arm {arm.name!r} names unknown pre-training {arm.source!r} "
                                     f"(defined: {', '.join(pkeys) or 'none'})")
            if not arm.name or "/" in arm.name or arm.name.startswith("."):
                fail(f"{af}.name", f"{arm.name!r} is not a usable folder name")
            arms.append(arm)
        names = [a.name for a in arms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            fail(f"{f}.arms", f"arm {dup[0]!r} is defined twice")
        if sd["baseline"] not in names:
            fail(f"{f}.baseline", f"unknown arm {sd['baseline']!r} (arms: {', '.join(names)})")
        scratch_source = next((a.source for a in arms if a.source is not None), None)
        arms = [a if a.source is not None else Arm(a.name, a.init, scratch_source) for a in arms]
        if any(a.source is None for a in arms):
            fail(f"{f}.arms", "a scratch arm takes its plans from a pre-training; define one")
        targets = []
        if not isinstance(sd["targets"], list) or not sd["targets"]:
            fail(f"{f}.targets", "expected a non-empty list of target datasets")
        for i, td in enumerate(sd["targets"]):
            tf = f"{f}.targets[{i}]"
            td = obj(Target, td, tf)
            pub = td.get("published_iid", {})
            if not isinstance(pub, Mapping) or any(
                    not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1 for v in pub.values()):
                fail(f"{tf}.published_iid", f"expected {{class or 'mean': DSC in [0, 1]}}, got {pub!r}")
            if pub and design != "ood":
                fail(f"{tf}.published_iid", f"belongs to design ood, not {design}")
            targets.append(Target(integer(need(td, "dataset", tf), f"{tf}.dataset"), td.get("convert"),
                                  str(td.get("options", "")), tuple((str(k), float(v)) for k, v in pub.items())))
        sweep = sd.get("sweep", [])
        if not isinstance(sweep, list):
            fail(f"{f}.sweep", "expected a list of integers (or \"all\")")
        sweep = tuple(None if v == "all" else integer(v, f"{f}.sweep[{i}]") for i, v in enumerate(sweep))
        if design in ("few_shot", "target_size", "pretrain_scale") and None in sweep:
            fail(f"{f}.sweep", f"design {design} sweeps numbers; 'all' is not one")
        if design != "ood" and not sweep:
            fail(f"{f}.sweep", f"needs at least one value ({SETTING_NAMES[design]})")
        if design in ("arms", "novel_groups", "learning_curve", "classification") and len(sweep) != 1:
            fail(f"{f}.sweep", f"design {design} takes one few-shot size, got {list(sweep)}")
        if design != "ood" and len(targets) != 1:
            fail(f"{f}.targets", f"design {design} takes one target dataset")
        if design == "pretrain_scale":
            bad = [a.name for a in arms if a.init == "pretrained" and sd_pre(pres, a.source).zoo]
            if bad:
                fail(f"{f}.arms", f"arm {bad[0]!r}: pre-training size can only vary for a pre-training "
                                  "we run (a 'dataset'), not a zoo model")
        if design == "ood":
            inits = sorted({a.init for a in arms})
            if inits != ["direct", "scratch"] and inits != ["direct", "pretrained"]:
                fail(f"{f}.arms", "design ood needs one 'direct' arm and one trained (IID) arm")
        elif any(a.init == "direct" for a in arms):
            fail(f"{f}.arms", f"init 'direct' belongs to design ood, not {design}")
        caps_d = obj(Caps, sd.get("caps", {}), f"{f}.caps")
        patch = caps_d.get("max_patch")
        if patch is not None and (not isinstance(patch, list) or len(patch) != 3):
            fail(f"{f}.caps.max_patch", f"expected three integers, got {patch!r}")
        caps = Caps(tuple(integer(v, f"{f}.caps.max_patch") for v in patch) if patch else None,
                    *(integer(caps_d[k], f"{f}.caps.{k}") if caps_d.get(k) is not None else None
                      for k in ("base_features", "max_features", "batch_size")))
        scales.append((sname, Scale(integer(sd["trials"], f"{f}.trials"), tuple(arms), sd["baseline"], tuple(pres),
                                    tuple(targets), sweep, budget(sd["budget"], f"{f}.budget"),
                                    str(sd.get("backbone", "nnunet")), caps)))
    return Protocol(str(top["name"]), str(top["paper"]), str(top["title"]), design, stat, tuple(scales),
                    str(top.get("description", "")), file)


def sd_pre(pres: List[Pretraining], key: Optional[str]) -> Pretraining:
    return next(p for p in pres if p.key == key)
