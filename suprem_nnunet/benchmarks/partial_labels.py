"""Partial-label pre-training benchmark (`python -m suprem_nnunet.benchmarks partial-labels`).

Phantom sources mimicking BTCV, LiTS, KiTS and MSD Pancreas (synth/profiles.py: each labels only
its own classes, with its own spacing, contrast phase and noise) are merged into one pre-training
set, planned with CPU caps and pre-trained once per arm with the same budget, data and seed:

* `marginal`: the partial-label loss (training/loss.py), classes a case does not annotate are not
  taught as background;
* `naive`: every case taken as fully labelled (what plain nnU-Net does), so an organ a source
  did not draw is taught as background;
* optionally `marginal:source`, `marginal:class` (`--sample-by`, training/sampling.py).

Each model predicts a FULLY labelled held-out phantom set (every class of the sources, portal-venous
phase) and is scored by name with evaluation/evaluate.py. Printed: per-class DSC per arm, the number
of sources annotating each class, and the means over all classes, over the minority classes
(annotated by fewer than half of the sources) and over the minority organs (minority classes that
are not lesions). Everything lives under `--out`; `results.json` holds one row per (arm, class).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import paths
from ..training.base import PARTIAL_LOSSES, TrainingBudget
from ..training.sampling import check_sample_by
from dataset_conversion.labelspace import unified_order
from ..synth import get_profile
from ..synth.profiles import SourceProfile
from ..planning.mirroring import DEFAULT_POLICY, check_policy
from ..labels import BY_NAME
from dataset_conversion.merge import merge
from ..dataset.raw import dataset_name
from ..synth.dataset import make_phantom_dataset, make_profile_dataset
from ..inference.predict import PredictConfig, predict
from ..planning.planner import PlanningCaps, plan_and_preprocess
from ..training.run import resolve_device
from ..labels import host_of
from ..errors import InputError
from ..evaluation.evaluate import EvaluateConfig, evaluate
from ..training.pretrain import PretrainConfig, pretrain

log = logging.getLogger(__name__)

DEFAULT_SOURCES = (("btcv", 4), ("lits", 6), ("kits", 6), ("msd_pancreas", 6))
DEFAULT_ARMS = ("marginal", "naive")
SAMPLING_ARMS = ("marginal:source", "marginal:class")
PRETRAIN_ID, FIRST_SOURCE_ID, HELDOUT_ID = 960, 961, 969


@dataclass
class PartialBenchConfig:
    out: Path = Path("suprem_partial_bench")
    sources: Tuple[Tuple[str, int], ...] = DEFAULT_SOURCES  # (profile, training cases)
    arms: Tuple[str, ...] = DEFAULT_ARMS  # LOSS[:SAMPLE_BY]
    num_test: int = 4
    # 2,250 iterations per arm: about 9 min per arm on one CPU core (547 and 520 s measured). At 900
    # (30 x 30) neither loss learned any class that only one source annotates (mean DSC 0.000 vs 0.000);
    # see the README.
    epochs: int = 75
    iterations_per_epoch: int = 30
    val_iterations: int = 2
    optimizer: str = "adamw"
    lr: float = 3e-3
    max_patch: Tuple[int, int, int] = (32, 32, 32)
    base_features: int = 8
    max_features: int = 64
    batch_size: int = 2
    seed: int = 0
    device: str = "cpu"
    step_size: float = 1.0  # sliding-window step (nnU-Net: 0.5); no overlap keeps CPU prediction short
    jobs: int = 1  # arms trained at once, each in its own process (one per CPU core on a CPU machine)
    threads: Optional[int] = None  # torch threads per arm (None: torch's default)
    left_right_mirroring: str = DEFAULT_POLICY  # planning/mirroring.py: swap, omit or nnunet
    timings: Dict[str, float] = field(default_factory=dict)


def parse_arm(arm: str) -> Tuple[str, str]:
    """'marginal' -> ('marginal', 'case'); 'marginal:source' -> ('marginal', 'source'); ValueError otherwise."""

    loss, _, sample_by = arm.partition(":")
    if loss not in PARTIAL_LOSSES:
        raise InputError(f"arm {arm!r}: unknown loss {loss!r}; choose one of {', '.join(PARTIAL_LOSSES)}")
    return loss, check_sample_by(sample_by or "case")


def source_profile(name: str) -> SourceProfile:
    """A registered profile (`synth/profiles.py`), or a custom source `LABEL=class+class+...`: the named
    unified classes labelled, on BTCV's grid, phase and noise (every organ is still drawn)."""
    label, eq, classes = name.partition("=")
    if not eq:
        return get_profile(name)
    names = tuple(c.strip() for c in classes.split("+") if c.strip())
    unknown = [c for c in names if c not in BY_NAME]
    if not label.isidentifier() or not names or unknown:
        raise InputError(f"source {name!r}: expected LABEL=class+class (unified class names)"
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    btcv = get_profile("btcv")
    return SourceProfile(label, f"custom source {label}", names, btcv.spacing, btcv.shape, btcv.slice_thickness,
                         btcv.phase, btcv.noise_hu, "Phantom" + "".join(w.title() for w in label.split("_")),
                         f"custom: {', '.join(names)} labelled")


def annotation_counts(sources: Sequence[Tuple[str, int]]) -> Dict[str, int]:
    """Class -> number of sources annotating it, in unified order."""

    counts: Dict[str, int] = {}
    for name, _ in sources:
        for c in source_profile(name).classes:
            counts[c] = counts.get(c, 0) + 1
    order = unified_order(counts)
    return {c: counts[c] for c in order}


def minority_classes(counts: Dict[str, int], num_sources: int) -> List[str]:
    """Classes annotated by fewer than half of the sources."""
    return [c for c, n in counts.items() if 2 * n < num_sources]


def make_data(cfg: PartialBenchConfig) -> Tuple[str, Path, Dict[str, int]]:
    """Phantom sources -> merged pre-training set (name) and a fully labelled held-out set (folder)."""

    raw = paths.raw_root()
    ids = []
    for i, (name, n) in enumerate(cfg.sources):
        ids.append(FIRST_SOURCE_ID + i)
        if not (raw / dataset_name(ids[-1], source_profile(name).dataset_name)).is_dir():
            make_profile_dataset(ids[-1], source_profile(name), n, 0, seed=cfg.seed, progress=False)
    merged = dataset_name(PRETRAIN_ID, "PartialPretrain")
    if not (raw / merged / "dataset.json").is_file():
        merge(ids, PRETRAIN_ID, "PartialPretrain", progress=False)
    counts = annotation_counts(cfg.sources)
    ref = source_profile(cfg.sources[0][0])  # the held-out grid: the first source's, portal-venous phase
    heldout = raw / dataset_name(HELDOUT_ID, "PartialHeldout")
    if not (heldout / "dataset.json").is_file():
        heldout = make_phantom_dataset(HELDOUT_ID, "PartialHeldout", list(counts), 1, cfg.num_test,
                                       shape=ref.shape, spacing=ref.spacing, seed=cfg.seed + 7919,
                                       noise_hu=ref.noise_hu, slice_thickness=ref.slice_thickness,
                                       progress=False)
    return merged, heldout, counts


def run_arm(cfg: PartialBenchConfig, arm: str, dataset: str, heldout: Path) -> Dict:
    """Pre-train one arm in its own results folder, predict the held-out set, evaluate; returns the metrics."""
    loss, sample_by = parse_arm(arm)
    slug = arm.replace(":", "_")
    os.environ["nnUNet_results"] = str(cfg.out / "data" / f"results_{slug}")  # nnunetv2 reads it lazily
    Path(os.environ["nnUNet_results"]).mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    t = time.time()
    budget = TrainingBudget(cfg.epochs, cfg.iterations_per_epoch, cfg.val_iterations, cfg.lr, cfg.epochs,
                            cfg.optimizer)
    folder = pretrain(PretrainConfig(dataset, device=device, budget=budget, seed=cfg.seed, partial_loss=loss,
                                     sample_by=sample_by, update_preprocessed=False,
                                     run_info={"benchmark": "partial-labels"}))
    cfg.timings[f"train {arm}"] = round(time.time() - t, 1)
    t = time.time()
    pred = cfg.out / "predictions" / slug
    predict(PredictConfig(heldout / "imagesTs", pred, folder, device=str(device), step_size=cfg.step_size))
    metrics = evaluate(EvaluateConfig(pred, heldout / "labelsTs", pred))
    cfg.timings[f"predict + evaluate {arm}"] = round(time.time() - t, 1)
    return metrics


def _arm_job(cfg: PartialBenchConfig, arm: str, dataset: str, heldout: Path) -> Tuple[Dict, Dict[str, float]]:
    """One arm in a worker process: (metrics, the arm's timings)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.timings = {}
    return run_arm(cfg, arm, dataset, heldout), cfg.timings


def run_arms(cfg: PartialBenchConfig, dataset: str, heldout: Path) -> Dict[str, Dict]:
    """{arm: metrics}: in this process one after the other, or with `jobs` > 1 in that many worker
    processes at once (spawned, so each arm starts from a fresh interpreter and its own seed; the
    results equal the sequential run's, see the README)."""
    if cfg.jobs <= 1 or len(cfg.arms) <= 1:
        import torch

        before = torch.get_num_threads()
        if cfg.threads:  # the same thread count as a worker process: float sums then agree bit for bit
            torch.set_num_threads(cfg.threads)
        try:
            return {arm: run_arm(cfg, arm, dataset, heldout) for arm in cfg.arms}
        finally:
            torch.set_num_threads(before)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(cfg.jobs, len(cfg.arms)), mp_context=mp.get_context("spawn")) as pool:
        futures = {arm: pool.submit(_arm_job, cfg, arm, dataset, heldout) for arm in cfg.arms}
        results = {}
        for arm, fut in futures.items():
            results[arm], timings = fut.result()
            cfg.timings.update(timings)
    return results


def table_rows(results: Dict[str, Dict], counts: Dict[str, int], num_sources: int) -> List[Dict]:
    """One row per (arm, class): mean DSC over the held-out cases (NaN: never scored)."""
    rows = []
    for arm, m in results.items():
        for c in counts:
            d = m["summary"].get(c, {}).get("dsc", {})
            rows.append({"arm": arm, "class": c, "sources_annotating": counts[c], "num_sources": num_sources,
                         "minority": 2 * counts[c] < num_sources, "dsc": d.get("mean", float("nan")),
                         "n": d.get("n", 0)})
    return rows


def summarise(rows: List[Dict]) -> Dict[str, Dict[str, float]]:
    """Per arm: mean DSC over all classes, minority classes and minority organs (NaN-aware)."""
    out: Dict[str, Dict[str, float]] = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]

        def mean(sel):
            v = [r["dsc"] for r in sel if np.isfinite(r["dsc"])]
            return float(np.mean(v)) if v else float("nan")

        out[arm] = {"all classes": mean(mine), "minority classes": mean([r for r in mine if r["minority"]]),
                    "minority organs": mean([r for r in mine if r["minority"] and host_of(r["class"]) is None]),
                    "majority classes": mean([r for r in mine if not r["minority"]])}
    return out


def format_table(rows: List[Dict], summary: Dict[str, Dict[str, float]]) -> List[str]:
    arms = list(summary)
    classes = list(dict.fromkeys(r["class"] for r in rows))
    dsc = {(r["arm"], r["class"]): r["dsc"] for r in rows}
    info = {r["class"]: r for r in rows}
    w = max(len(c) for c in classes + list(next(iter(summary.values()))))
    head = f"{'class':<{w}}  sources  " + "  ".join(f"{a:>15}" for a in arms)
    lines = [head, "-" * len(head)]
    for c in classes:
        r = info[c]
        tag = f"{r['sources_annotating']}/{r['num_sources']}{' *' if r['minority'] else '  '}"
        lines.append(f"{c:<{w}}  {tag:<7}  " + "  ".join(f"{dsc[(a, c)]:>15.3f}" for a in arms))
    lines.append("-" * len(head))
    for k in next(iter(summary.values())):
        lines.append(f"{k:<{w}}  {'mean':<7}  " + "  ".join(f"{summary[a][k]:>15.3f}" for a in arms))
    lines.append("* annotated by fewer than half of the sources (minority)")
    return lines


def run_benchmark(cfg: PartialBenchConfig) -> Dict:
    """Make data, plan, train and evaluate every arm; returns {'rows', 'summary', 'config', ...}."""
    for arm in cfg.arms:
        parse_arm(arm)  # fail before anything runs
    check_policy(cfg.left_right_mirroring)
    for name, _ in cfg.sources:
        source_profile(name)
    cfg.out = Path(cfg.out).absolute()
    cfg.out.mkdir(parents=True, exist_ok=True)
    paths.setup_environment(str(cfg.out / "data"))
    start = time.time()
    load_start = os.getloadavg()[0]
    t = time.time()
    dataset, heldout, counts = make_data(cfg)
    cfg.timings["make phantoms + merge"] = round(time.time() - t, 1)
    t = time.time()
    caps = PlanningCaps(cfg.max_patch, cfg.base_features, cfg.max_features, cfg.batch_size)
    plan_and_preprocess(dataset, "nnunet", ("3d_fullres",), caps, num_processes=2, verify=False,
                        left_right_mirroring=cfg.left_right_mirroring)
    cfg.timings["plan + preprocess"] = round(time.time() - t, 1)
    results = run_arms(cfg, dataset, heldout)
    rows = table_rows(results, counts, len(cfg.sources))
    summary = summarise(rows)
    report = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
              "rows": rows, "summary": summary, "wall_s": round(time.time() - start, 1),
              "load_average": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
              "cpu_count": os.cpu_count()}
    tmp = cfg.out / "results.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(cfg.out / "results.json")
    return report
