"""Evidence for the importance score: does it find where the AI is wrong, and does revising what it
flags help more than revising at random?  `python -m suprem_nnunet.benchmarks.flywheel --out DIR --seeds 0 1 2`

1. Phantoms: a training set of normal cases, a *pool* to score with a known unusual subset
   (`UNUSUAL`: an organ missing, an enlarged liver, a displaced kidney, a very large liver tumour,
   heavy noise, thick slices), both drawn from the run's seed, and a held-out test set with both
   kinds that is the same for every seed (so that per-case DSC can be averaged over seeds).
2. A model trained briefly on the normal training cases predicts the pool; `suprem_review score`'s
   machinery scores it with test-time-flip passes (one model). True error per case = 1 − mean DSC
   over classes against the phantom ground truth. Reported: Spearman(case importance, true error),
   precision@k of the top-k scored cases against the k truly worst cases (random ranking: k / N,
   the base rate), and the share of the top-k that are unusual cases (base rate: unusual / N).
3. One flywheel round per arm, budget-matched: (a) `no retraining`; the other arms fine-tune the
   model from its weights for the same iterations on a raw dataset of the training cases plus every
   pool case labelled by the AI (AI labels not marked annotated: only their drawn voxels supervise),
   with (b) `AI labels`: nothing revised, (c) `top-k`: the queue's top k cases revised, (d)
   `random-k`: k random cases revised (`import_revisions`, their ground truth as the revised label,
   all classes annotated). Each arm's fine-tuning starts from `seed_everything(seed)`. Held-out
   mean DSC per arm (normal and unusual cases), and how many unusual cases the chosen k held.
4. Over seeds (`run_seeds`): per arm and seed the held-out mean DSC; top-k against each other arm
   by a paired t-test over seeds (unit: one seed's held-out mean DSC; n = seeds) and a Wilcoxon
   signed-rank test over held-out cases (unit: a case's DSC averaged over seeds; n = held-out
   cases), both two-sided, from scipy.stats.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import paths
from ..synth.phantom import PhantomGenerator, _Shape
from ..dataset.raw import write_image, dataset_name, write_annotated_classes, write_dataset_json
from ..evaluation.evaluate import evaluate_folders
from ..inference.predict import predict
from ..planning.planner import PlanningCaps, plan_and_preprocess
from ..training.base import TrainingBudget
from ..training.finetune import finetune
from ..training.run import resolve_device
from ..seeding import seed_everything
from ..review.revisions import import_revisions
from ..review.score import run_score
from ..review.tta import tta_passes
from ..training.finetune import FinetuneConfig
from ..training.pretrain import PretrainConfig, pretrain

log = logging.getLogger(__name__)

CLASSES = ("liver", "spleen", "kidney_left", "kidney_right", "aorta")
#: phantom seeds of the held-out set (the same for every run seed; run seeds use s * 100003 + [0, 3000))
HELDOUT_SEED = 2**31 - 10**6
ARMS = ("no retraining", "AI labels", "top-k", "random-k")
UNUSUAL = ("missing_organ", "enlarged_organ", "displaced_organ", "large_tumour", "heavy_noise", "thick_slice")


@dataclass
class BenchmarkConfig:
    out: Path = Path("review_benchmark")
    # sized for a 2-core CPU shared with other jobs (about 2-4 s per training iteration there)
    shape: Tuple[int, int, int] = (32, 32, 32)
    spacing: Tuple[float, float, float] = (10.5, 10.5, 10.5)
    num_train: int = 10
    num_pool_normal: int = 18
    pool_unusual_each: int = 1  # per kind in UNUSUAL
    num_heldout_normal: int = 6
    heldout_unusual_each: int = 2
    k: int = 6
    max_patch: Tuple[int, int, int] = (32, 32, 32)
    base_features: int = 8
    max_features: int = 32
    epochs: int = 12
    retrain_epochs: int = 4
    iterations_per_epoch: int = 40
    lr: float = 3e-3
    seed: int = 0
    timings: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def quick(cls, out: Path) -> "BenchmarkConfig":
        """A smoke-sized run for tests and trying the code path; numbers mean nothing."""
        return cls(out=Path(out), shape=(24, 24, 24), spacing=(14.0, 14.0, 14.0), num_train=2, num_pool_normal=2,
                   pool_unusual_each=1, num_heldout_normal=1, heldout_unusual_each=0, k=3, max_patch=(16, 16, 16),
                   base_features=4, max_features=16, epochs=1, retrain_epochs=1, iterations_per_epoch=2)


def make_unusual_generator(seed: int, kind: Optional[str]):
    """A PhantomGenerator whose anatomy is changed for `kind` (None: a normal case)."""
    class Unusual(PhantomGenerator):
        def _anatomy(self):
            shapes = super()._anatomy()
            by = {s.name: s for s in shapes}
            if kind == "missing_organ":
                shapes = [s for s in shapes if s.name != "spleen"]
            elif kind == "enlarged_organ":
                by["liver"].radii = by["liver"].radii * 1.4
            elif kind == "displaced_organ":
                by["kidney_right"].center = by["kidney_right"].center + np.array([15.0, -20.0, -75.0])
            elif kind == "large_tumour":
                liver = by["liver"]
                shapes = [s for s in shapes if s.name != "liver_tumor"]
                shapes.append(_Shape("liver_tumor", liver.center.copy(), np.array([42.0, 40.0, 38.0]), 40.0,
                                     host="liver"))
            return shapes

    return Unusual(seed)


def write_cases(folder: Path, split: str, cases: Sequence[Tuple[str, Optional[str], int]],
                cfg: BenchmarkConfig) -> None:
    """Write (case, kind, seed) phantoms to images<split>/labels<split> of a raw dataset folder."""
    for sub in (f"images{split}", f"labels{split}"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case, kind, seed in cases:
        kw = {"noise_hu": 70.0 if kind == "heavy_noise" else 12.0,
              "slice_thickness": 30.0 if kind == "thick_slice" else None}
        ph = make_unusual_generator(seed, kind)(cfg.shape, cfg.spacing, "LPS", **kw)
        geo = (ph.spacing, ph.origin, ph.direction)
        write_image(folder / f"images{split}" / f"{case}_0000.nii.gz", ph.image, *geo)
        write_image(folder / f"labels{split}" / f"{case}.nii.gz", ph.label_map(list(CLASSES), True), *geo)


def case_lists(cfg: BenchmarkConfig) -> Dict[str, List[Tuple[str, Optional[str], int]]]:
    """{'train', 'pool', 'heldout': [(case, kind or None, seed)]} with disjoint seeds; train and pool
    from `cfg.seed`, the held-out set the same for every seed."""
    s = cfg.seed * 100003
    train = [(f"train_{i:03d}", None, s + i) for i in range(cfg.num_train)]
    pool, i = [], 0
    for _ in range(cfg.num_pool_normal):
        pool.append((f"pool_{i:03d}", None, s + 1000 + i)); i += 1
    for kind in UNUSUAL:
        for _ in range(cfg.pool_unusual_each):
            pool.append((f"pool_{i:03d}", kind, s + 1000 + i)); i += 1
    held, i, h = [], 0, HELDOUT_SEED
    for _ in range(cfg.num_heldout_normal):
        held.append((f"held_{i:03d}", None, h + i)); i += 1
    for kind in UNUSUAL:
        for _ in range(cfg.heldout_unusual_each):
            held.append((f"held_{i:03d}", kind, h + i)); i += 1
    return {"train": train, "pool": pool, "heldout": held}


def case_errors(pred_dir: Path, gt_dir: Path) -> Dict[str, float]:
    """{case: 1 − mean DSC over classes} (NaN class scores, both masks empty, left out)."""
    res = evaluate_folders(pred_dir, gt_dir, None, labels={c: i + 1 for i, c in enumerate(CLASSES)})
    per: Dict[str, List[float]] = {}
    for r in res["per_case"]:
        per.setdefault(r["case"], [])
        if not np.isnan(r["dsc"]):
            per[r["case"]].append(r["dsc"])
    return {c: 1.0 - float(np.mean(v)) if v else 0.0 for c, v in per.items()}


def precision_at_k(ranked: Sequence[str], relevant: Sequence[str], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / float(k)


def _stage(cfg: BenchmarkConfig, name: str, t0: float) -> None:
    cfg.timings[name] = round(time.time() - t0, 1)
    log.info("benchmark: %s done in %.1f s", name, cfg.timings[name])


def run_benchmark(cfg: BenchmarkConfig) -> Dict:
    import os

    from scipy.stats import spearmanr

    import torch

    torch.set_num_threads(1)  # tiny networks on a shared 2-core CPU: more threads thrash
    out = Path(cfg.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    paths.setup_environment(str(out / "data"))
    raw = paths.raw_root()
    lists = case_lists(cfg)
    kinds = {c: k for part in lists.values() for c, k, _ in part}
    device = resolve_device("cpu")

    t = time.time()
    base_ds = raw / dataset_name(960, "ReviewTrain")
    write_cases(base_ds, "Tr", lists["train"], cfg)
    write_dataset_json(base_ds, CLASSES, len(lists["train"]), name="ReviewTrain")
    pool_dir, held_dir = out / "pool", out / "heldout"
    write_cases(pool_dir, "", lists["pool"], cfg)
    write_cases(held_dir, "", lists["heldout"], cfg)
    _stage(cfg, "phantoms", t)

    t = time.time()
    caps = PlanningCaps(cfg.max_patch, cfg.base_features, cfg.max_features, 2)
    plan_and_preprocess(base_ds.name, "nnunet", ("3d_fullres",), caps, num_processes=2, verify=False, clean=True)
    budget = TrainingBudget(cfg.epochs, cfg.iterations_per_epoch, 2, cfg.lr, cfg.epochs, "adamw")
    seed_everything(cfg.seed)
    model_dir = pretrain(PretrainConfig(base_ds.name, device=device, budget=budget, seed=cfg.seed,
                                        update_preprocessed=False, role="review-benchmark"))
    _stage(cfg, "train model", t)

    t = time.time()
    pred_pool = out / "pred_pool"
    predict(pool_dir / "images", pred_pool, model_dir)
    errors = case_errors(pred_pool, pool_dir / "labels")
    _stage(cfg, "predict pool", t)
    t = time.time()
    passes = tta_passes(model_dir, pool_dir / "images", out / "pool_tta")
    records = run_score(passes, out / "review", pool_dir / "images", attention=True, preview=False)
    _stage(cfg, "score pool (TTA passes + scorers)", t)

    cases = sorted(errors)
    score = {c: records[c]["importance"] for c in cases}
    rho = float(spearmanr([score[c] for c in cases], [errors[c] for c in cases]).correlation)
    rho_max = float(spearmanr([records[c]["importance_max"] for c in cases], [errors[c] for c in cases]).correlation)
    ranked = sorted(cases, key=lambda c: -score[c])
    worst = sorted(cases, key=lambda c: -errors[c])[: cfg.k]
    unusual = [c for c in cases if kinds[c]]
    comp_rho = {}
    for comp in ("uncertainty", "absence", "inconsistency", "implausibility", "volume"):
        vals = [np.nanmean([v.get(comp) if v.get(comp) is not None else np.nan
                            for v in records[c]["classes"].values()]) for c in cases]
        comp_rho[comp] = float(spearmanr(vals, [errors[c] for c in cases]).correlation)
    ranking = {"n_cases": len(cases), "k": cfg.k, "spearman": rho, "spearman_importance_max": rho_max,
               "spearman_per_component": comp_rho,
               "precision_at_k_worst": precision_at_k(ranked, worst, cfg.k), "base_rate_worst": cfg.k / len(cases),
               "precision_at_k_unusual": precision_at_k(ranked, unusual, cfg.k),
               "base_rate_unusual": len(unusual) / len(cases),
               "per_case": [{"case": c, "kind": kinds[c] or "normal", "importance": score[c],
                             "true_error": errors[c], "rank": ranked.index(c) + 1} for c in ranked]}
    log.info("Spearman %.3f, precision@%d %.2f (base rate %.2f)", rho, cfg.k, ranking["precision_at_k_worst"],
             ranking["base_rate_worst"])

    # ---------------------------------------------------------------- one flywheel round per arm
    rng = np.random.default_rng(cfg.seed + 7)
    arms = {"AI labels": [], "top-k": ranked[: cfg.k],
            "random-k": sorted(rng.choice(cases, cfg.k, replace=False).tolist())}
    held_results = {"no retraining": _held_out_errors(model_dir, held_dir, out / "pred_held" / "base")}
    for n, (arm, chosen) in enumerate(arms.items()):
        t = time.time()
        ds = raw / dataset_name(961 + n, f"ReviewFlywheel{n}")
        (ds / "imagesTr").mkdir(parents=True, exist_ok=True)
        (ds / "labelsTr").mkdir(parents=True, exist_ok=True)
        annotated = {}
        for c, _, _ in lists["train"]:
            for sub, name in (("imagesTr", f"{c}_0000.nii.gz"), ("labelsTr", f"{c}.nii.gz")):
                _link(base_ds / sub / name, ds / sub / name)
            annotated[c] = list(CLASSES)
        for c in cases:  # the pool, labelled by the AI; not annotated until revised
            _link(pool_dir / "images" / f"{c}_0000.nii.gz", ds / "imagesTr" / f"{c}_0000.nii.gz")
            _link(pred_pool / f"{c}.nii.gz", ds / "labelsTr" / f"{c}.nii.gz", copy=True)
            annotated[c] = []
        write_annotated_classes(ds, annotated)
        write_dataset_json(ds, CLASSES, len(lists["train"]) + len(cases), name=ds.name.split("_", 1)[1])
        if chosen:
            revised = out / "revised" / arm.replace(" ", "_")
            revised.mkdir(parents=True, exist_ok=True)
            for c in chosen:
                _link(pool_dir / "labels" / f"{c}.nii.gz", revised / f"{c}.nii.gz")
            (revised / "revision.json").write_text(json.dumps({"reviewer": "phantom ground truth",
                                                               "note": f"benchmark arm {arm}"}))
            import_revisions(revised, ds.name)
        rb = TrainingBudget(cfg.retrain_epochs, cfg.iterations_per_epoch, 2, cfg.lr, cfg.retrain_epochs, "adamw")
        seed_everything(cfg.seed)
        arm_model = finetune(FinetuneConfig(ds.name, str(model_dir), budget=rb, device=device, verify=False,
                                            seed=cfg.seed))
        held_results[arm] = _held_out_errors(arm_model, held_dir, out / "pred_held" / arm.replace(" ", "_"))
        _stage(cfg, f"flywheel {arm}", t)
    flywheel = {"k": cfg.k, "chosen": arms, "unusual_chosen": {a: sum(bool(kinds[c]) for c in ch)
                                                               for a, ch in arms.items()}}
    for arm, errs in held_results.items():
        normal = [1 - e for c, e in errs.items() if not kinds[c]]
        odd = [1 - e for c, e in errs.items() if kinds[c]]
        flywheel[arm] = {"mean_dsc": float(np.mean([1 - e for e in errs.values()])),
                         "normal_dsc": float(np.mean(normal)), "unusual_dsc": float(np.mean(odd)),
                         "per_case_dsc": {c: 1 - e for c, e in errs.items()}}
    result = {"config": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                         for k, v in asdict(cfg).items() if k != "timings"},
              "ranking": ranking, "flywheel": flywheel, "timings": cfg.timings,
              "load_average": list(os.getloadavg()), "cpu_count": os.cpu_count()}
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    (out / "benchmark.md").write_text(format_result(result))
    return result


def _link(src: Path, dst: Path, copy: bool = False) -> None:
    import shutil

    if dst.exists():
        dst.unlink()
    if copy:
        shutil.copyfile(src, dst)
    else:
        try:
            dst.hardlink_to(src)
        except OSError:
            shutil.copyfile(src, dst)


def _held_out_errors(model_dir: Path, held_dir: Path, pred: Path) -> Dict[str, float]:
    predict(held_dir / "images", pred, model_dir)
    return case_errors(pred, held_dir / "labels")


def format_result(r: Dict) -> str:
    rk, fw = r["ranking"], r["flywheel"]
    lines = ["# Review benchmark", "",
             f"Pool: {rk['n_cases']} cases, {round(rk['base_rate_unusual'] * rk['n_cases'])} unusual; k = {rk['k']}.", "",
             "| measure | value | random ranking |", "|---|---|---|",
             f"| Spearman(case importance, 1 − DSC) | {rk['spearman']:.3f} | 0 |",
             f"| precision@{rk['k']} vs the {rk['k']} worst cases | {rk['precision_at_k_worst']:.2f} | "
             f"{rk['base_rate_worst']:.2f} |",
             f"| share of unusual cases in the top {rk['k']} | {rk['precision_at_k_unusual']:.2f} | "
             f"{rk['base_rate_unusual']:.2f} |",
             f"| Spearman with max-over-classes importance | {rk['spearman_importance_max']:.3f} | 0 |", "",
             "Spearman per component (class mean): " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                  rk["spearman_per_component"].items()), "",
             "| arm | held-out mean DSC | normal | unusual | unusual cases revised |", "|---|---|---|---|---|"]
    for arm in ARMS:
        if arm in fw:
            lines.append(f"| {arm} | {fw[arm]['mean_dsc']:.3f} | {fw[arm]['normal_dsc']:.3f} | "
                         f"{fw[arm]['unusual_dsc']:.3f} | {fw['unusual_chosen'].get(arm, '')} |")
    lines += ["", "| stage | seconds |", "|---|---|"] + [f"| {k} | {v} |" for k, v in r["timings"].items()]
    lines += ["", f"Load average at the end (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in r['load_average'])}; "
                  f"{r['cpu_count']} CPU(s)."]
    return "\n".join(lines) + "\n"


def run_seeds(cfg: BenchmarkConfig, seeds: Sequence[int]) -> Dict:
    """`run_benchmark` once per seed into `cfg.out/seed_<s>/` (a seed whose `benchmark.json` exists is
    read, not run again), then `flywheel_statistics`; writes `flywheel.json` and `flywheel.md`."""
    from dataclasses import replace

    per_seed = {}
    for seed in seeds:
        sub = Path(cfg.out) / f"seed_{seed}"
        done = sub / "benchmark.json"
        if done.is_file():
            per_seed[seed] = json.loads(done.read_text())
            log.info("seed %d: read %s", seed, done)
        else:
            per_seed[seed] = run_benchmark(replace(cfg, out=sub, seed=seed, timings={}))
    stats = flywheel_statistics(per_seed)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "flywheel.json").write_text(json.dumps(stats, indent=2))
    (Path(cfg.out) / "flywheel.md").write_text(format_seeds(stats))
    return stats


def flywheel_statistics(per_seed: Dict[int, Dict]) -> Dict:
    """Held-out DSC per arm and seed, and top-k against each other arm (see the module docstring, 4)."""
    from scipy.stats import ttest_rel, wilcoxon

    seeds = sorted(per_seed)
    arms = [a for a in ARMS if all(a in per_seed[s]["flywheel"] for s in seeds)]
    table = {a: {s: per_seed[s]["flywheel"][a]["mean_dsc"] for s in seeds} for a in arms}
    split = {a: {part: {s: per_seed[s]["flywheel"][a][f"{part}_dsc"] for s in seeds} for part in ("normal", "unusual")}
             for a in arms}
    cases = sorted(set.intersection(*(set(per_seed[s]["flywheel"][arms[0]]["per_case_dsc"]) for s in seeds)))
    per_case = {a: {c: float(np.mean([per_seed[s]["flywheel"][a]["per_case_dsc"][c] for s in seeds])) for c in cases}
                for a in arms}
    conf = per_seed[seeds[0]].get("config", {})
    held_kinds = {c: k or "normal" for c, k, _ in case_lists(BenchmarkConfig(
        num_heldout_normal=conf.get("num_heldout_normal", BenchmarkConfig.num_heldout_normal),
        heldout_unusual_each=conf.get("heldout_unusual_each", BenchmarkConfig.heldout_unusual_each)))["heldout"]}
    by_kind = {a: {kind: float(np.mean([per_case[a][c] for c in cases if held_kinds.get(c, "?") == kind]))
                   for kind in sorted({held_kinds.get(c, "?") for c in cases})} for a in arms}
    tests = {}
    for other in (a for a in arms if a != "top-k"):
        x, y = [table["top-k"][s] for s in seeds], [table[other][s] for s in seeds]
        d = np.subtract(x, y)
        t = {"mean_difference": float(d.mean()), "seeds_top_k_better": int((d > 0).sum())}
        t["paired_t_over_seeds"] = {"n": len(seeds), "unit": "one seed's held-out mean DSC",
                                    "p": float(ttest_rel(x, y).pvalue) if len(seeds) > 1 and d.std() > 0 else None}
        xc, yc = [per_case["top-k"][c] for c in cases], [per_case[other][c] for c in cases]
        dc = np.subtract(xc, yc)
        t["wilcoxon_over_cases"] = {"n": len(cases), "unit": "a held-out case's DSC averaged over seeds",
                                    "mean_difference": float(dc.mean()), "cases_top_k_better": int((dc > 0).sum()),
                                    "p": float(wilcoxon(xc, yc).pvalue) if np.any(dc != 0) else None}
        tests[other] = t
    hits = {s: {"top-k": per_seed[s]["flywheel"]["unusual_chosen"]["top-k"],
                "random-k": per_seed[s]["flywheel"]["unusual_chosen"]["random-k"],
                "pool_unusual": round(per_seed[s]["ranking"]["base_rate_unusual"] * per_seed[s]["ranking"]["n_cases"]),
                "k": per_seed[s]["flywheel"]["k"],
                "top_k_kinds": sorted(r["kind"] for r in per_seed[s]["ranking"]["per_case"][: per_seed[s]["flywheel"]["k"]]
                                      if r["kind"] != "normal")} for s in seeds}
    ranking = {s: {k: per_seed[s]["ranking"][k] for k in ("spearman", "precision_at_k_worst", "precision_at_k_unusual")}
               for s in seeds}
    return {"seeds": seeds, "arms": arms, "held_out_mean_dsc": table, "held_out_split_dsc": split,
            "held_out_cases": len(cases), "held_out_kind_dsc": by_kind, "tests_top_k_vs": tests, "unusual_in_chosen": hits, "ranking": ranking,
            "timings": {s: per_seed[s]["timings"] for s in seeds}}


def format_seeds(st: Dict) -> str:
    """The multi-seed flywheel table and tests as Markdown."""
    seeds = st["seeds"]
    lines = ["# Review flywheel over seeds", "",
             "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | normal | unusual |",
             "|---|" + "---|" * (len(seeds) + 3)]
    for a in st["arms"]:
        v = st["held_out_mean_dsc"][a]
        sp = st["held_out_split_dsc"][a]
        lines.append(f"| {a} | " + " | ".join(f"{v[s]:.3f}" for s in seeds) + f" | {np.mean(list(v.values())):.3f} | "
                     f"{np.mean(list(sp['normal'].values())):.3f} | {np.mean(list(sp['unusual'].values())):.3f} |")
    lines += ["", f"top-k against each arm (two-sided; t over seeds: n = {len(seeds)}, unit = one seed's held-out "
                  f"mean DSC; Wilcoxon over cases: n = {st['held_out_cases']}, unit = a case's DSC averaged over seeds):",
              "", "| top-k vs | mean diff (seeds) | seeds better | p (paired t) | mean diff (cases) | cases better | "
                  "p (Wilcoxon) |", "|---|---|---|---|---|---|---|"]
    fmt = lambda p: "n/a" if p is None else f"{p:.3g}"
    for other, t in st["tests_top_k_vs"].items():
        w = t["wilcoxon_over_cases"]
        lines.append(f"| {other} | {t['mean_difference']:+.3f} | {t['seeds_top_k_better']}/{len(seeds)} | "
                     f"{fmt(t['paired_t_over_seeds']['p'])} | {w['mean_difference']:+.3f} | "
                     f"{w['cases_top_k_better']}/{w['n']} | {fmt(w['p'])} |")
    kinds = sorted(next(iter(st["held_out_kind_dsc"].values())))
    lines += ["", "Held-out DSC per kind (averaged over seeds):", "",
              "| arm | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for a in st["arms"]:
        lines.append(f"| {a} | " + " | ".join(f"{st['held_out_kind_dsc'][a][k]:.3f}" for k in kinds) + " |")
    lines += ["", "| seed | unusual in top-k | unusual in random-k | pool unusual / k | top-k unusual kinds | "
                  "Spearman | precision@k (worst) |", "|---|---|---|---|---|---|---|"]
    for s in seeds:
        h, r = st["unusual_in_chosen"][s], st["ranking"][s]
        lines.append(f"| {s} | {h['top-k']} | {h['random-k']} | {h['pool_unusual']} / {h['k']} | "
                     f"{', '.join(h['top_k_kinds']) or '-'} | {r['spearman']:.3f} | {r['precision_at_k_worst']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suprem_nnunet.benchmarks flywheel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="review_benchmark")
    p.add_argument("--epochs", type=int, default=BenchmarkConfig.epochs)
    p.add_argument("--retrain-epochs", type=int, default=BenchmarkConfig.retrain_epochs)
    p.add_argument("--iterations-per-epoch", type=int, default=BenchmarkConfig.iterations_per_epoch)
    p.add_argument("-k", type=int, default=BenchmarkConfig.k)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="one run per seed (OUT/seed_<s>/), then the flywheel statistics over seeds")
    p.add_argument("--quick", action="store_true", help="smoke-sized run (the code path only)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("suprem_nnunet").setLevel(logging.INFO)
    if a.quick:
        cfg = BenchmarkConfig.quick(Path(a.out))
    else:
        cfg = BenchmarkConfig(out=Path(a.out), epochs=a.epochs, retrain_epochs=a.retrain_epochs,
                              iterations_per_epoch=a.iterations_per_epoch, k=a.k, seed=a.seed)
    if a.seeds:
        print(format_seeds(run_seeds(cfg, a.seeds)))
    else:
        print(format_result(run_benchmark(cfg)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
