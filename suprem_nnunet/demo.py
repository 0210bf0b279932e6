"""The whole story on phantoms: pre-train, fine-tune vs from scratch on novel classes, evaluate.

Runs in-process through the same Python API the commands use, in its own data folder.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from . import paths
from .inference.predict import predict
from .planning.planner import PlanningCaps, plan_and_preprocess
from .synth.dataset import make_phantom_dataset
from .training.base import TrainingBudget
from .training.finetune import finetune
from .training.run import resolve_device
from .evaluation.compare import paired_comparison
from .evaluation.figures import label_slices, score_bars
from .evaluation.evaluate import EvaluateConfig, evaluate
from .inference.predict import PredictConfig
from .training.finetune import FinetuneConfig
from .training.pretrain import PretrainConfig, pretrain

log = logging.getLogger(__name__)

SHARED = ("liver", "spleen", "kidney_left", "kidney_right", "aorta")
NOVEL = ("iliopsoas_left", "iliopsoas_right", "autochthon_left", "autochthon_right")
PRETRAIN_CLASSES = ("liver", "spleen", "kidney_left", "kidney_right", "stomach", "pancreas", "gall_bladder",
                    "aorta", "postcava", "vertebrae", "liver_tumor", "kidney_tumor", "kidney_cyst",
                    "pancreas_tumor")


@dataclass
class DemoConfig:
    out: Path = Path("suprem_demo")
    size: Tuple[int, int, int] = (48, 48, 48)
    spacing: Tuple[float, float, float] = (7.0, 7.0, 7.0)
    num_pretrain: int = 16
    num_target_train: int = 8
    num_target_test: int = 5
    few_shot: int = 4
    max_patch: Tuple[int, int, int] = (32, 32, 32)
    base_features: int = 8
    max_features: int = 64
    pretrain_epochs: int = 16
    finetune_epochs: int = 6
    iterations_per_epoch: int = 40
    optimizer: str = "adamw"  # converges in the few hundred iterations a CPU demo can afford
    lr: float = 3e-3
    seed: int = 0
    device: str = "cpu"
    timings: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def quick(cls, out: Path) -> "DemoConfig":
        """A smoke-sized run (about a minute) for tests; numbers mean nothing."""
        return cls(out=Path(out), size=(32, 32, 32), spacing=(10.0, 10.0, 10.0), num_pretrain=4,
                   num_target_train=4, num_target_test=2, few_shot=2, max_patch=(16, 16, 16),
                   base_features=4, max_features=16, pretrain_epochs=1, finetune_epochs=1,
                   iterations_per_epoch=2)


def _stage(cfg: DemoConfig, name: str, t0: float) -> None:
    cfg.timings[name] = round(time.time() - t0, 1)
    log.info("demo: %s done in %.1f s", name, cfg.timings[name])


def run_demo(cfg: DemoConfig) -> Path:
    """Run every stage; returns the path of report.md."""

    out = Path(cfg.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    paths.setup_environment(str(out / "data"))
    device = resolve_device(cfg.device)
    common = dict(shape=cfg.size, spacing=cfg.spacing, progress=False)
    t = time.time()
    pre = make_phantom_dataset(901, "DemoPretrain", PRETRAIN_CLASSES, cfg.num_pretrain, 0, seed=cfg.seed, **common)
    tgt = make_phantom_dataset(902, "DemoTarget", SHARED + NOVEL, cfg.num_target_train, cfg.num_target_test,
                               seed=cfg.seed + 1000, **common)
    _stage(cfg, "make phantoms", t)

    t = time.time()
    caps = PlanningCaps(cfg.max_patch, cfg.base_features, cfg.max_features, 2)
    plan_and_preprocess(pre.name, "nnunet", ("3d_fullres",), caps, num_processes=2, verify=False, clean=True)
    _stage(cfg, "plan + preprocess", t)

    t = time.time()
    budget = TrainingBudget(cfg.pretrain_epochs, cfg.iterations_per_epoch, 2, cfg.lr, 1, cfg.optimizer)
    pre_dir = pretrain(PretrainConfig(pre.name, device=device, budget=budget, seed=cfg.seed, update_preprocessed=False))
    _stage(cfg, "pre-train", t)

    arms = {}
    for arm, scratch in (("fine-tuned", False), ("from scratch", True)):
        t = time.time()
        budget = TrainingBudget(cfg.finetune_epochs, cfg.iterations_per_epoch, 2, cfg.lr, 1, cfg.optimizer)
        arms[arm] = finetune(FinetuneConfig(tgt.name, str(pre_dir), from_scratch=scratch,
                                            num_train_cases=cfg.few_shot, seed=cfg.seed, budget=budget,
                                            device=device, verify=False))
        _stage(cfg, f"train {arm}", t)

    results = {}
    for arm, model_dir in arms.items():
        t = time.time()
        pred = out / "predictions" / arm.replace(" ", "_")
        predict(PredictConfig(tgt / "imagesTs", pred, model_dir, device=str(device)))
        results[arm] = evaluate(EvaluateConfig(pred, tgt / "labelsTs", pred))
        _stage(cfg, f"predict + evaluate {arm}", t)
    return write_report(cfg, out, tgt, pre_dir, arms, results)


def write_report(cfg: DemoConfig, out: Path, target: Path, pre_dir: Path, arms: Dict[str, Path],
                 results: Dict[str, Dict]) -> Path:
    """report.md with the per-class table of both arms, a bar chart PNG and a slice PNG."""
    import SimpleITK as sitk


    names = list(next(iter(results.values()))["summary"])
    dsc = {arm: {c: r["summary"][c]["dsc"]["mean"] for c in names} for arm, r in results.items()}
    score_bars(dsc, out / "dsc_per_class.png", "DSC", "Target task: fine-tuned vs from scratch", NOVEL)
    case = sorted(p.name for p in (target / "labelsTs").glob("*.nii.gz"))[0]
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(target / "imagesTs" / case.replace(".nii.gz", "_0000.nii.gz"))))
    segs = {"ground truth": sitk.GetArrayFromImage(sitk.ReadImage(str(target / "labelsTs" / case)))}
    for arm in arms:
        segs[arm] = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "predictions" / arm.replace(" ", "_") / case)))
    z = label_slices(ct, segs, names, out / "prediction_slice.png")

    a, b = list(results)
    cmp = paired_comparison(results[a], results[b], "dsc")
    lines = ["# suprem-nnunet demo report", "",
             "Synthetic abdominal CT phantoms. Pre-training labels "
             f"{len(PRETRAIN_CLASSES)} classes; the target task labels {len(SHARED)} of them (shared) and "
             f"{len(NOVEL)} classes never seen in pre-training (novel, marked *). Both arms train on the same "
             f"{cfg.few_shot} target cases with the same budget and plans; the fine-tuned arm starts from the "
             "pre-trained weights with its head remapped by class name.", "",
             f"Test cases: {results[a]['summary'][names[0]]['dsc']['n']} held-out phantoms (one run per arm). "
             "p: two-sided paired t-test over test cases (unit: a test case).", "",
             f"Seed {cfg.seed} (phantoms, few-shot cases, weights, patches, augmentation; the same seed gives "
             f"the same table on the CPU). Pre-training: {cfg.pretrain_epochs} epochs × "
             f"{cfg.iterations_per_epoch} iterations = {cfg.pretrain_epochs * cfg.iterations_per_epoch} "
             f"iterations; each target arm: {cfg.finetune_epochs} × {cfg.iterations_per_epoch} = "
             f"{cfg.finetune_epochs * cfg.iterations_per_epoch} iterations ({cfg.optimizer}, lr {cfg.lr:g}).", "",
             f"| class | {a} DSC | {b} DSC | {a} NSD | {b} NSD | Δ DSC | p |", "|---|---|---|---|---|---|---|"]

    def ms(s):
        return f"{s['mean']:.3f} ± {s['sd']:.3f}" if s["n"] else "n/a"

    for c in names:
        sa, sb = results[a]["summary"][c], results[b]["summary"][c]
        star = " *" if c in NOVEL else ""
        lines.append(f"| {c}{star} | {ms(sa['dsc'])} | {ms(sb['dsc'])} | {ms(sa['nsd'])} | {ms(sb['nsd'])} | "
                     f"{cmp[c]['diff']:+.3f} | {cmp[c]['p']:.3g} |")
    for group, cls in (("shared", SHARED), ("novel", NOVEL)):
        ma = np.nanmean([dsc[a][c] for c in cls])
        mb = np.nanmean([dsc[b][c] for c in cls])
        lines.append(f"| **mean {group}** | {ma:.3f} | {mb:.3f} | | | {ma - mb:+.3f} | |")
    lines += ["", "![DSC per class](dsc_per_class.png)", "",
              f"![Axial slice {z} of {case}: ground truth and both predictions](prediction_slice.png)", "",
              "## Run", "", f"- pre-trained model: `{pre_dir}`"]
    for arm, d in arms.items():
        mapping = d / "head_mapping.json"
        lines.append(f"- {arm}: `{d}`" + (f" (head mapping: `{mapping}`)" if mapping.is_file() else ""))
    lines += [f"- NSD tolerance: {results[a]['tolerance_mm']} mm", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in cfg.timings.items()]
    lines += [f"| **total** | {sum(cfg.timings.values()):.1f} |", "", "## Configuration", "", "```json",
              json.dumps({k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                          for k, v in asdict(cfg).items() if k != "timings"}, indent=2), "```", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
