"""One run of a protocol, for real: pre-train (cached), fine-tune or train from scratch, predict the
target's test cases, evaluate. Everything goes through the package's Python API; each run writes
its models under its own folder (nnU-Net's results folder is pointed there for the run)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple


from .. import paths
from ..dataset.raw import atomic_write_json
from ..locking import file_lock
from .data import DatasetInfo, dataset_digest
from .protocol import Pretraining, Scale
from ..planning.planner import PlanningCaps, plan_and_preprocess
from ..training.run import resolve_device
from ..networks.checkpoint import load_training_checkpoint
from ..inference.predict import predict, predict_with_release
from ..models.resolve import resolve_model
from ..training.finetune import finetune
from ..zoo.store import read_index
from ..training.pretrain import PretrainConfig, SubsetPretrainer, pretrain
from ..inference.predict import PredictConfig
from ..evaluation.evaluate import EvaluateConfig, evaluate
from ..training.finetune import FinetuneConfig

log = logging.getLogger(__name__)
CONFIGURATION = "3d_fullres"


@dataclass(frozen=True)
class RunSpec:
    """One (arm, setting, trial) of a protocol; `folder` is its cache key."""

    protocol: str
    arm: str
    init: str  # scratch | pretrained | direct
    source: str  # pre-training key (plans for scratch arms)
    setting: str  # the sweep value as text: a number, 'all', or a dataset name
    trial: int
    target: int  # dataset id
    num_train: Optional[int] = None  # few-shot size; None: all training cases
    pretrain_cases: Optional[int] = None  # pre-training subset (design pretrain_scale)

    @property
    def folder(self) -> Path:
        return Path(self.arm) / self.setting / f"trial_{self.trial:02d}"

    @property
    def seed(self) -> int:
        """Every arm of a trial shares the seed: the same few-shot cases, the same initialisation draw."""
        return self.trial


@dataclass
class Context:
    """What every run of one sweep shares."""

    root: Path  # the experiments folder (shared data, cached pre-trainings, one folder per protocol)
    scale_name: str
    scale: Scale
    datasets: Dict[int, DatasetInfo]
    device: str = "cpu"
    seed: int = 0  # base seed: pre-trainings use it, trial k of every arm uses seed + k
    digests: Dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def cache(self) -> Path:
        return self.root / "pretrain"

    @property
    def mirroring(self) -> bool:
        """Test-time mirroring of the runs' predictions (predict's default: on for CUDA only)."""
        return self.device.startswith("cuda")

    @property
    def precision(self) -> str:
        """What the networks compute in: nnU-Net's autocast (float16) on CUDA, float32 elsewhere."""
        return "amp-float16" if self.device.startswith("cuda") else "float32"

    def dataset_digest(self, dataset_id: int) -> str:
        if dataset_id not in self.digests:
            self.digests[dataset_id] = dataset_digest(dataset_id, self.scale_name)
        return self.digests[dataset_id]

    def pretrained_identity(self, source: str, num_cases: Optional[int] = None) -> str:
        """What an arm's starting weights are: the sha256 recorded when a zoo model was imported,
        or the cache key of our own pre-training (its dataset's digest, budget, caps, seed, device)."""
        pre = self.scale.pretraining(source)
        if pre.zoo is not None:
            index = read_index()
            rec = index["checkpoints"].get(pre.zoo) or index["models"].get(pre.zoo) or {}
            return f"zoo:{pre.zoo}:{rec.get('sha256', 'not imported')}"
        return pretraining_key(self, pre, num_cases)


@contextlib.contextmanager
def results_folder(folder: Path) -> Iterator[None]:
    """Point nnU-Net's results folder (read when a trainer is built) at `folder` for one run."""
    old = os.environ.get("nnUNet_results")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["nnUNet_results"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("nnUNet_results", None)
        else:
            os.environ["nnUNet_results"] = old


def _planning_caps(scale: Scale):
    c = scale.caps
    return PlanningCaps(c.max_patch, c.base_features, c.max_features, c.batch_size)


# ---------------------------------------------------------------------------- pre-training
def pretraining_key(ctx: Context, pre: Pretraining, num_cases: Optional[int]) -> str:
    """Cache folder name of a pre-training: dataset, size and a hash of everything that shapes it."""
    n = num_cases if num_cases is not None else pre.num_cases
    if n is not None and n >= ctx.datasets[pre.dataset].num_train:
        n = None  # all cases: the same run as the unrestricted one
    spec = {"dataset": pre.dataset, "num_cases": n, "budget": asdict(pre.budget), "caps": asdict(ctx.scale.caps),
            "backbone": ctx.scale.backbone, "scale": ctx.scale_name, "seed": ctx.seed, "device": ctx.device,
            "data": ctx.dataset_digest(pre.dataset)}
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return f"D{pre.dataset}_{'all' if n is None else n}_{digest}"


def pretrained_weights(ctx: Context, key: str, num_cases: Optional[int] = None) -> Tuple[str, Dict]:
    """(what finetune()/predict() take: checkpoint path or zoo name, {seconds, cases}) for pre-training
    `key`; pre-trains on first use and caches the result under <root>/pretrain/ for every protocol.
    Processes that need the same pre-training (the shards of a sweep) take turns through a lock on
    its folder: the first makes it, the others wait and then read it."""
    pre = ctx.scale.pretraining(key)
    if pre.zoo is not None:
        return pre.zoo, {"zoo": pre.zoo, "seconds": None, "cases": None}
    folder = ctx.cache / pretraining_key(ctx, pre, num_cases)
    with file_lock(folder):
        done = folder / "pretraining.json"
        if done.is_file():
            try:
                info = json.loads(done.read_text())
                if Path(info["checkpoint"]).is_file():
                    return info["checkpoint"], info
            except (json.JSONDecodeError, KeyError) as e:
                log.warning("%s: unreadable (%s); pre-training again", done, e)
        info = make_pretraining(ctx, pre, folder, num_cases)
        atomic_write_json(done, info)
    log.info("pre-training %s (%d cases) done in %.0f s", folder.name, info["cases"], info["seconds"])
    return info["checkpoint"], info


def make_pretraining(ctx: Context, pre: Pretraining, folder: Path, num_cases: Optional[int] = None) -> Dict:
    """Pre-train `pre` into `folder/model`; returns {checkpoint, seconds, cases, dataset}. The dataset's
    planning and preprocessing is guarded by a lock on its preprocessed folder (pre-trainings of one
    dataset on several subsets share it)."""

    info_ds = ctx.datasets[pre.dataset]
    n = num_cases if num_cases is not None else pre.num_cases
    shutil.rmtree(folder / "model", ignore_errors=True)
    t = time.time()
    with file_lock(paths.preprocessed_root() / info_ds.name):
        plan_and_preprocess(info_ds.name, ctx.scale.backbone, (CONFIGURATION,), _planning_caps(ctx.scale),
                            num_processes=2, verify=False)
    with results_folder(folder / "model"):
        model_dir = pretrain(PretrainConfig(
            info_ds.name, backbone=ctx.scale.backbone, configuration=CONFIGURATION, device=ctx.device,
            budget=pre.budget.training_budget(), resume=False, seed=ctx.seed, update_preprocessed=False,
            trainer_class=SubsetPretrainer, num_train_cases=n))
    cases = json.loads((model_dir / "run_info.json").read_text())["pretrain_cases"]
    return {"checkpoint": str(model_dir / "checkpoint_final.pth"), "seconds": round(time.time() - t, 1),
            "cases": cases, "dataset": info_ds.name}


# ---------------------------------------------------------------------------- one run
def learning_curve(checkpoint: Path) -> List[Dict]:
    """Per epoch: validation pseudo-DSC (EMA and raw, nnU-Net's online foreground Dice) and seconds
    since the start of training, from the checkpoint's log."""
    logs = load_training_checkpoint(checkpoint).get("logging") or {}
    ema, raw = logs.get("ema_fg_dice", []), logs.get("mean_fg_dice", [])
    start, end = logs.get("epoch_start_timestamps", []), logs.get("epoch_end_timestamps", [])
    t0 = float(start[0]) if start else 0.0
    return [{"epoch": i + 1, "seconds": round(float(end[i]) - t0, 2) if i < len(end) else float("nan"),
             "val_dsc_ema": float(ema[i]), "val_dsc": float(raw[i]) if i < len(raw) else float("nan")}
            for i in range(len(ema))]


def _predict(model: str, images: Path, out: Path, device: str, mirror: bool) -> None:
    resolved = resolve_model(model)
    if not resolved.is_ours:  # released checkpoint: the paper's direct-inference protocol
        predict_with_release(images, out, resolved.location, device)
    else:
        predict(PredictConfig(images, out, resolved.location, device=device, mirror=mirror))


def run_one(ctx: Context, spec: RunSpec, folder: Path) -> Dict:
    """Train (unless the arm is 'direct'), predict and evaluate one run; returns its result record
    (rows per test case and class, learning curve, seconds). Leaves models and predictions in `folder`."""

    target = ctx.datasets[spec.target]
    raw = paths.raw_root() / target.name
    weights, pre_info = pretrained_weights(ctx, spec.source, spec.pretrain_cases)
    device = str(resolve_device(ctx.device))
    t = time.time()
    curve: List[Dict] = []
    if spec.init == "direct":
        model = weights
    else:
        with results_folder(folder / "model"):
            model_dir = finetune(FinetuneConfig(
                target.name, weights, CONFIGURATION, from_scratch=spec.init == "scratch",
                num_train_cases=spec.num_train, seed=ctx.seed + spec.seed, budget=ctx.scale.budget.training_budget(),
                device=resolve_device(ctx.device), num_processes=2, resume=False, verify=False,
                max_patch=ctx.scale.caps.max_patch))
        model = str(model_dir)
        curve = learning_curve(model_dir / "checkpoint_final.pth")
        for f in ("checkpoint_best.pth", "checkpoint_latest.pth"):
            (model_dir / f).unlink(missing_ok=True)
    train_s = time.time() - t
    pred = folder / "predictions"
    shutil.rmtree(pred, ignore_errors=True)
    _predict(model, raw / "imagesTs", pred, device, ctx.mirroring)
    result = evaluate(EvaluateConfig(pred, raw / "labelsTs", folder / "evaluation"))
    rows = [{"case": r["case"], "class": r["class"], "dsc": r["dsc"], "nsd": r["nsd"]} for r in result["per_case"]]
    return {"rows": rows, "curve": curve, "train_seconds": round(train_s, 1),
            "seconds": round(time.time() - t, 1), "pretraining": pre_info, "target": target.name,
            "not_predicted": result["not_predicted"]}
