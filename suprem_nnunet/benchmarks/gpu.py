"""GPU acceptance run (`python -m suprem_nnunet.benchmarks gpu`): the real pipeline on CUDA, side by side
with nnU-Net, on phantoms it makes itself. docs/gpu.md says how to bring it to a GPU machine.

Parts, each in its own try/except (a failure is recorded with its message and the next part runs):

* `trainers` (a): nnunetv2's stock `nnUNetTrainer` and our `SupremPretrainer` on the same
  preprocessed phantom dataset (~1.5 mm) and the same plans (nnU-Net's default 3d_fullres plan for
  an 8 GB GPU), with nnU-Net's real data loader (its augmentation workers: nnUNet_n_proc_DA, default
  min(12, CPUs) on CUDA) and its mixed precision (float16 autocast + GradScaler on CUDA); after
  `trainer_warmup` iterations, `trainer_iterations` timed ones each: iterations/s, their ratio
  (ours / stock; goal >= 0.95), peak GPU memory (`torch.cuda.max_memory_allocated`) and the share of
  the time spent waiting in `next(dataloader)`.
* `presets` (b): the three SuPreM presets (plans/suprem_unet.json, suprem_segresnet.json,
  suprem_swinunetr.json: U-Net, SegResNet, Swin UNETR at 96^3), batch 2, 32 classes + background,
  partial-label Dice + CE, AdamW, float16 autocast + GradScaler on CUDA: iterations/s, peak memory,
  the FLOPs of one forward + backward counted by `torch.utils.flop_counter.FlopCounterMode`, and MFU:
  FLOPs x iterations/s over the GPU's dense fp16/bf16 tensor-core peak (PEAK_TFLOPS).
* `predict` (c): our predictor (`inference.predict.make_predictor`, what `suprem_predict --device
  cuda` runs) vs nnunetv2's `nnUNetPredictor` on a 512x512x300 band phantom with mirroring, both on
  the device (`benchmarks/predict.py`): wall times, their ratio, min DSC between the masks.
* `finetune` (d): `suprem_finetune --pretrained FILE` (the command, in a subprocess) from a release-layout
  U-Net checkpoint (`zoo.layouts.release_like_checkpoint`, the release's width) for a few iterations:
  finite losses, head_mapping.json written.
* `torchrun` (e): `torchrun --standalone --nproc_per_node 1` of `benchmarks/gpu_ddp.py` (NCCL on CUDA,
  gloo on CPU): a few iterations of SupremPretrainer under DDP, then a second launch that resumes from
  its checkpoint and trains one more epoch.

They run in the order a, b, d, e, c (the prediction, longest, last). Before each part, when the
seconds its estimate (Sizes.estimate_s) needs exceed what is left of `--budget-s`, it is skipped
(status "skipped"). Results go to `<out>/results.json` (written atomically after every part) and a
table is printed; nnU-Net's own output goes to `<out>/benchmark.log`. Exit status 0 when every part
that ran is ok, else 1. Before any work: every package in REQUIRED_PACKAGES and every module in
ENTRY_MODULES must import (else one line naming the missing packages, exit 1), and `--device cuda`
needs a CUDA device (else one line, exit 1). `--device cpu --dry-run` runs every part at tiny sizes
(tests/e2e/test_benchmarks_gpu_dryrun.py).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ..labels.table import ATLAS_CLASSES, ATLAS_IDS
from ..synth import PHANTOM_CLASSES, PhantomGenerator
from ..planning.planner import PlanningCaps, plan_and_preprocess
from ..synth.dataset import make_phantom_dataset
from ..seeding import seed_everything
from ..training.base import SupremPretrainer, hosted_channel_pairs
from ..training.run import build_trainer, load_preprocessed_plans
from ..networks import network_class
from ..training.loss import PartialLabelDiceCELoss
from ..planning.presets import load_preset
from . import predict as bp
from ..networks.checkpoint import load_training_checkpoint
from ..zoo.layouts import release_like_checkpoint
from ..dataset.raw import atomic_write_json
from ..paths import setup_environment
from ..errors import InputError

log = logging.getLogger(__name__)

#: packages the GPU machine lacks and this run imports (module names); see docs/gpu.md for the wheels
REQUIRED_PACKAGES: Tuple[str, ...] = ("nnunetv2", "SimpleITK", "batchgenerators", "batchgeneratorsv2", "acvl_utils",
                                      "dynamic_network_architectures", "monai", "blosc2")
#: modules the parts import; importing them first finds a missing dependency of those packages (e.g.
#: connected-components-3d, which nnU-Net's trainer needs through acvl_utils) before any work
ENTRY_MODULES: Tuple[str, ...] = ("nnunetv2.training.nnUNetTrainer.nnUNetTrainer",
                                  "nnunetv2.inference.predict_from_raw_data", "monai.networks.nets",
                                  "suprem_nnunet.training.run", "suprem_nnunet.training.finetune",
                                  "suprem_nnunet.inference.predict", "suprem_nnunet.benchmarks.predict")
#: parts in the order they run (see the module docstring for the letters)
PARTS: Tuple[str, ...] = ("trainers", "presets", "finetune", "torchrun", "predict")
NEEDS_DATA = ("trainers", "finetune", "torchrun")  # the parts that train on the phantom dataset
DATASET_ID, DATASET_NAME = 991, "GpuBenchPhantoms"
DATASET = f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
PLANS = "suprem_nnunet"  # nnU-Net's ExperimentPlanner through our planner (plans_name_for("nnunet"))
PRESET_BACKBONES = ("unet", "segresnet", "swinunetr")
HU_WINDOW = (-175.0, 250.0)  # the SuPreM presets' clip, scaled to [0, 1]
#: dense (no sparsity) fp16/bf16 tensor-core peak in TFLOP/s by device-name substring, from NVIDIA's
#: datasheets: H100 SXM and H200 SXM 989.4 (the sheets give 1,979 "with sparsity"); H100 PCIe 756,
#: H200 NVL 835. Checked in this order; other GPUs: no MFU unless --peak-tflops is given.
PEAK_TFLOPS: Tuple[Tuple[str, float], ...] = (("H200 NVL", 835.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
                                              ("H200", 989.4), ("H100", 989.4))
#: an 8192^3 bf16 matrix product measured on this workplace's H200 (/work/.library/device/KINDS.md,
#: 2026-10-28: 788 TFLOP/s on random data): a second, attainable ceiling for the H200's MFU
H200_MEASURED_MATMUL_TFLOPS = 788.0


@dataclass(frozen=True)
class Sizes:
    """Everything the parts' cost depends on; REAL for a GPU, DRY for the CPU dry run."""

    phantom_shape: int = 128  # voxels per axis of the training phantoms (parts a, d, e)
    phantom_spacing: float = 1.5  # mm
    phantom_cases: int = 6
    gpu_memory_gb: float = 8.0  # nnU-Net's default planning target
    plan_caps: Optional[Tuple[Tuple[int, int, int], int, int, int]] = None  # PlanningCaps; None: nnU-Net's plan
    trainer_warmup: int = 5
    trainer_iterations: int = 30
    preset_patch: Dict[str, int] = field(default_factory=dict)  # per backbone; unset: the preset's own (96)
    preset_arch: Dict[str, dict] = field(default_factory=dict)  # arch kwargs over the presets' (dry run: narrow)
    preset_batch: int = 2
    preset_warmup: int = 5
    preset_iterations: int = 30
    preset_phantoms: int = 4
    predict_shape_zyx: Tuple[int, int, int] = (300, 512, 512)
    predict_warmup_zyx: Tuple[int, int, int] = (64, 256, 256)
    predict_patch: int = 64
    predict_unet_features: int = 8
    release_width: int = 32  # the released U-Net's base features
    finetune_iterations: int = 5
    finetune_max_patch: Optional[int] = None
    ddp_iterations: int = 5
    #: seconds each stage is expected to take (H200 and 16 CPU cores for REAL); estimates, see docs/gpu.md
    estimate_s: Dict[str, float] = field(default_factory=lambda: {
        "data": 40, "trainers": 60, "presets": 45, "finetune": 45, "torchrun": 55, "predict": 200})


REAL = Sizes()
DRY = Sizes(phantom_shape=16, phantom_spacing=6.0, phantom_cases=3, plan_caps=((16, 16, 16), 4, 16, 2),
            trainer_warmup=1, trainer_iterations=3, preset_patch={"unet": 32, "segresnet": 32, "swinunetr": 64},
            preset_arch={"unet": {"base_features": 8}, "segresnet": {"init_filters": 8},
                         "swinunetr": {"feature_size": 12, "depths": (1, 1, 1, 1)}},
            preset_batch=1, preset_warmup=0, preset_iterations=1, preset_phantoms=1,
            predict_shape_zyx=(24, 48, 48), predict_warmup_zyx=(16, 32, 32), predict_patch=16,
            predict_unet_features=4, release_width=8, finetune_iterations=2, finetune_max_patch=16,
            ddp_iterations=2,
            estimate_s={"data": 10, "trainers": 15, "presets": 15, "finetune": 20, "torchrun": 40, "predict": 15})


# ---------------------------------------------------------------------------- checks before any work
def check_packages(names: Sequence[str], entry_modules: Sequence[str] = ()) -> None:
    """ValueError (one line) naming every module of `names` that does not import, then every package
    missing under `entry_modules` (a dependency of theirs: named with the module that needs it)."""
    missing: List[str] = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # ImportError, or a broken install failing inside its own import
            missing.append(name if isinstance(e, ModuleNotFoundError) and e.name == name else f"{name} ({e})")
    for module in entry_modules if not missing else ():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if not any(m.startswith(f"{e.name} ") for m in missing):  # named once, by the first module needing it
                missing.append(f"{e.name} (imported by {module})")
        except ImportError as e:
            missing.append(f"{module} ({e})")
    if missing:
        raise InputError(f"missing Python package(s): {', '.join(missing)}; install the wheels listed in "
                         "docs/gpu.md (pip install --no-deps --target DIR *.whl, then PYTHONPATH=DIR)")


def check_device(device: str) -> None:
    """ValueError (one line) unless `device` is cpu, or cuda with a CUDA device present."""
    import torch

    if device not in ("cpu", "cuda"):
        raise InputError(f"--device {device!r}: expected cuda or cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is present (torch.cuda.is_available() is False); "
                         "run the CPU dry run with --device cpu --dry-run")


# ---------------------------------------------------------------------------- shared helpers
def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device) -> None:
    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device) -> Optional[float]:
    import torch

    if torch.device(device).type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)


def peak_tflops(device_name: str) -> Optional[float]:
    """Dense fp16/bf16 peak of a GPU by its name (PEAK_TFLOPS), None when it is not listed."""
    for key, value in PEAK_TFLOPS:
        if key in device_name:
            return value
    return None


def make_phantoms(n: int, size: int, spacing: float, seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """`n` phantoms of `size`^3 voxels: (image scaled to [0, 1] by the presets' HU window (float32),
    label with AbdomenAtlas ids 1..32 (uint8))."""

    drawn = [c for c in ATLAS_CLASSES if c in PHANTOM_CLASSES]
    lut = np.array([0] + [ATLAS_IDS[c] for c in drawn], np.uint8)
    lo, hi = HU_WINDOW
    out = []
    for i in range(n):
        ph = PhantomGenerator(seed * 1000 + i)((size,) * 3, (spacing,) * 3)
        img = ((np.clip(ph.image.astype(np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)
        out.append((img, lut[ph.label_map(drawn, True)]))
    return out


def random_batch(phantoms: Sequence[Tuple[np.ndarray, np.ndarray]], batch_size: int, patch: int,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """(B, 1, p, p, p) float32 images and (B, 1, p, p, p) int64 labels: random crops, random mirroring."""
    xs, ys = [], []
    for _ in range(batch_size):
        img, lab = phantoms[int(rng.integers(len(phantoms)))]
        corner = [int(rng.integers(s - patch + 1)) for s in img.shape]
        sl = tuple(slice(c, c + patch) for c in corner)
        x, y = img[sl], lab[sl]
        for ax in range(3):
            if rng.random() < 0.5:
                x, y = np.flip(x, ax), np.flip(y, ax)
        xs.append(x)
        ys.append(y)
    return np.stack(xs)[:, None].copy(), np.stack(ys)[:, None].astype(np.int64)


@dataclass
class Context:
    device: str
    sizes: Sizes
    out: Path
    seed: int
    peak_tflops: Optional[float]
    log_file: Path
    data_error: Optional[str] = None  # why the phantom dataset could not be made


class PartFailed(RuntimeError):
    """A part that failed but has figures to keep (e.g. two of the three presets ran)."""

    def __init__(self, message: str, figures: Dict) -> None:
        super().__init__(message)
        self.figures = figures


def _need_data(ctx: Context) -> None:
    if ctx.data_error is not None:
        raise RuntimeError(f"the phantom dataset {DATASET} was not made: {ctx.data_error}")


# ---------------------------------------------------------------------------- the phantom dataset
def make_dataset(ctx: Context) -> Dict:
    """Phantoms as an nnU-Net raw dataset, fingerprinted, planned (nnU-Net's ExperimentPlanner, its
    default GPU target) and preprocessed for 3d_fullres: the data of parts a, d and e."""

    s = ctx.sizes
    t = time.perf_counter()
    make_phantom_dataset(DATASET_ID, DATASET_NAME, list(PHANTOM_CLASSES), s.phantom_cases, 0,
                         shape=(s.phantom_shape,) * 3, spacing=(s.phantom_spacing,) * 3, seed=ctx.seed, progress=False)
    synth_s = time.perf_counter() - t
    caps = PlanningCaps(*s.plan_caps) if s.plan_caps else PlanningCaps()
    nproc = max(1, min(8, (os.cpu_count() or 1))) if ctx.device == "cuda" else 1
    plans = plan_and_preprocess(DATASET, "nnunet", ("3d_fullres",), caps, num_processes=nproc,
                                gpu_memory_gb=s.gpu_memory_gb, verify=False)
    cfg = plans["configurations"]["3d_fullres"]
    return {"cases": s.phantom_cases, "shape": [s.phantom_shape] * 3, "spacing_mm": s.phantom_spacing,
            "classes": len(PHANTOM_CLASSES), "synthesis_s": round(synth_s, 1),
            "plan": {"patch_size": cfg["patch_size"], "batch_size": cfg["batch_size"], "spacing": cfg["spacing"],
                     "features_per_stage": cfg["architecture"]["arch_kwargs"].get("features_per_stage"),
                     "gpu_memory_target_gb": s.gpu_memory_gb, "caps": s.plan_caps}}


# ---------------------------------------------------------------------------- a: nnU-Net's trainer vs ours
def time_trainer(trainer, warmup: int, iterations: int, device: str) -> Dict:
    """`warmup` then `iterations` timed train steps of an nnU-Net trainer with its own loaders (started by
    on_train_start, stopped here): iterations/s, the share of the time waiting in next(loader), peak memory."""
    import torch

    try:
        trainer.on_train_start()
        trainer.on_train_epoch_start()
        for _ in range(warmup):
            trainer.train_step(next(trainer.dataloader_train))
        _sync(device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        wait, losses = 0.0, []
        t0 = time.perf_counter()
        for _ in range(iterations):
            a = time.perf_counter()
            batch = next(trainer.dataloader_train)
            wait += time.perf_counter() - a
            losses.append(float(trainer.train_step(batch)["loss"]))  # the step returns the loss on the CPU: synced
        _sync(device)
        total = time.perf_counter() - t0
    finally:
        for loader in (getattr(trainer, "dataloader_train", None), getattr(trainer, "dataloader_val", None)):
            if hasattr(loader, "_finish"):  # nnU-Net's multi-process augmenters: stop their workers
                loader._finish()
    if not all(np.isfinite(losses)):
        raise RuntimeError(f"{type(trainer).__name__}: a training loss is not finite ({losses})")
    return {"network": type(trainer.network).__name__, "iterations_per_s": round(iterations / total, 3),
            "seconds": round(total, 4),
            "data_wait_share": round(wait / total, 4), "peak_gpu_memory_gib": _peak_gib(device),
            "grad_scaler": trainer.grad_scaler is not None, "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4)}


def part_trainers(ctx: Context) -> Dict:
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


    _need_data(ctx)
    s, dev = ctx.sizes, torch.device(ctx.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as nnUNetv2_train sets it
    plans, dataset_json = load_preprocessed_plans(DATASET, PLANS)
    rows = {}
    stock_plans = {**plans, "continue_training": False}  # what nnUNetv2_train passes for a fresh run
    for name, make in (("nnUNetTrainer", lambda: nnUNetTrainer(plans=dict(stock_plans), configuration="3d_fullres",
                                                               fold="all", dataset_json=dataset_json, device=dev)),
                       ("SupremPretrainer", lambda: build_trainer(SupremPretrainer, DATASET, PLANS, "3d_fullres",
                                                                  "all", dev))):
        _reset_peak(ctx.device)
        seed_everything(ctx.seed)
        trainer = make()
        rows[name] = time_trainer(trainer, s.trainer_warmup, s.trainer_iterations, ctx.device)
        del trainer
    cfg = plans["configurations"]["3d_fullres"]
    ratio = rows["nnUNetTrainer"]["seconds"] / rows["SupremPretrainer"]["seconds"]  # same number of iterations
    return {"plans": PLANS, "patch_size": cfg["patch_size"], "batch_size": cfg["batch_size"],
            "warmup": s.trainer_warmup, "iterations": s.trainer_iterations,
            "data_workers": int(os.environ.get("nnUNet_n_proc_DA", "0")),
            "torch_compile": os.environ.get("nnUNet_compile"), "order": list(rows), **rows,
            "ratio_ours_over_stock": round(ratio, 3), "ratio_goal": 0.95, "ratio_met": bool(ratio >= 0.95)}


# ---------------------------------------------------------------------------- b: the SuPreM presets
def flops_per_iteration(net, loss_fn, x, y, amp_dtype, amp: bool) -> int:
    """FLOPs of one forward + backward (FlopCounterMode: convolutions, matrix products, attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp):
            loss = loss_fn(net(x), y)
        loss.backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def bench_preset(backbone: str, ctx: Context, phantoms) -> Dict:
    import torch


    s, dev = ctx.sizes, torch.device(ctx.device)
    preset = load_preset(backbone)
    patch = s.preset_patch.get(backbone) or int(preset["patch_size"][0])
    kwargs = {**preset["arch_kwargs"], **s.preset_arch.get(backbone, {})}
    classes = len(ATLAS_CLASSES)
    _reset_peak(ctx.device)
    torch.manual_seed(ctx.seed)
    net = network_class(backbone)(input_channels=1, num_classes=classes + 1, deep_supervision=False, **kwargs).to(dev)
    loss_fn = PartialLabelDiceCELoss(batch_dice=True, hosted=hosted_channel_pairs(list(ATLAS_CLASSES)))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-5)
    cuda = dev.type == "cuda"
    amp, amp_dtype = cuda, torch.float16  # nnU-Net's mixed precision on CUDA; float32 on the CPU
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    rng = np.random.default_rng(ctx.seed)

    def batch():
        x, y = random_batch(phantoms, s.preset_batch, patch, rng)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        if cuda:
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)

    net.train()
    flops = flops_per_iteration(net, loss_fn, *batch(), amp_dtype, amp)
    data_s = total_s = 0.0
    losses = []
    for it in range(s.preset_warmup + s.preset_iterations):
        if it == s.preset_warmup and cuda:
            torch.cuda.reset_peak_memory_stats()
        _sync(dev)
        t0 = time.perf_counter()
        x, y = batch()
        _sync(dev)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp):
            loss = loss_fn(net(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        scaler.step(opt)
        scaler.update()
        _sync(dev)
        if it >= s.preset_warmup:
            data_s += t1 - t0
            total_s += time.perf_counter() - t0
            losses.append(float(loss.detach()))
    if not all(np.isfinite(losses)):
        raise RuntimeError(f"{backbone}: a training loss is not finite ({losses})")
    its = s.preset_iterations / total_s
    row = {"network": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters()),
           "arch_kwargs": kwargs, "patch": patch, "batch_size": s.preset_batch, "output_channels": classes + 1,
           "amp_dtype": "float16" if amp else "float32", "iterations_per_s": round(its, 3),
           "data_share": round(data_s / total_s, 4), "peak_gpu_memory_gib": _peak_gib(dev),
           "flops_per_iteration": flops, "achieved_tflops": round(flops * its / 1e12, 2),
           "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4)}
    if ctx.peak_tflops:  # over the whole iteration, and over its compute alone (the crop and copy excluded)
        row["mfu"] = round(flops * its / (ctx.peak_tflops * 1e12), 4)
        compute_s = total_s - data_s
        row["mfu_excluding_data"] = round(flops * s.preset_iterations / compute_s / (ctx.peak_tflops * 1e12), 4)
    del net, opt
    return row


def part_presets(ctx: Context) -> Dict:
    import torch

    s = ctx.sizes
    if ctx.device == "cuda":
        torch.backends.cudnn.benchmark = True
    size = max(s.preset_patch.values(), default=96) + 16  # the presets crop 96^3
    t = time.perf_counter()
    phantoms = make_phantoms(s.preset_phantoms, size, 3.0, ctx.seed)
    out: Dict = {"phantoms": s.preset_phantoms, "phantom_size": size, "phantom_synthesis_s":
                 round(time.perf_counter() - t, 1), "peak_tflops": ctx.peak_tflops,
                 "warmup": s.preset_warmup, "iterations": s.preset_iterations}
    failed = []
    for b in PRESET_BACKBONES:  # each preset on its own: one that fails leaves the others' figures
        try:
            out[b] = bench_preset(b, ctx, phantoms)
        except Exception as e:
            out[b] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            failed.append(b)
            _append_traceback(ctx, f"presets/{b}")
    if failed:
        raise PartFailed(f"preset(s) {', '.join(failed)} failed (figures of the others are kept)", out)
    return out


# ---------------------------------------------------------------------------- c: prediction
def part_predict(ctx: Context) -> Dict:
    import torch


    s = ctx.sizes
    folder = ctx.out / "predict"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    image = bp.phantom_file(folder, s.predict_shape_zyx)
    warm = bp.phantom_file(folder, s.predict_warmup_zyx)
    synth_s = time.perf_counter() - t
    name = f"phantom {'x'.join(map(str, s.predict_shape_zyx[::-1]))} (x, y, z)"
    _reset_peak(ctx.device)
    row = bp.bench_predict([(name, image, True)], [True], step=0.5, patch=s.predict_patch,
                           unet_features=s.predict_unet_features, bf16=False, device=ctx.device,
                           warmup_image=warm)[0]
    if ctx.device == "cuda":
        row["peak_gpu_memory_gib_both"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)
    row["phantom_synthesis_s"] = round(synth_s, 1)
    for f in folder.glob("*.nii.gz"):
        f.unlink()
    return row


# ---------------------------------------------------------------------------- d: fine-tuning a release
def part_finetune(ctx: Context, remaining_s: float) -> Dict:
    import torch


    _need_data(ctx)
    s = ctx.sizes
    ckpt = ctx.out / "release" / "supervised_suprem_unet_2100.pth"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(release_like_checkpoint("unet", base_features=s.release_width, seed=ctx.seed), ckpt)
    argv = [DATASET, "--pretrained", str(ckpt), "--device", ctx.device, "--epochs", "1",
            "--iterations-per-epoch", str(s.finetune_iterations), "--val-iterations", "1", "--no-resume",
            "--no-verify", "-np", "1" if ctx.device == "cpu" else "4", "--seed", str(ctx.seed)]
    if s.finetune_max_patch:
        argv += ["--max-patch", str(s.finetune_max_patch)]
    t = time.perf_counter()
    with open(ctx.log_file, "a") as logf:  # the command as a user runs it (the CLI is a layer above this one)
        proc = subprocess.run([sys.executable, "-m", "suprem_nnunet.cli.finetune", *argv], stdout=logf,
                              stderr=subprocess.PIPE, text=True, timeout=max(60.0, remaining_s))
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise RuntimeError(f"suprem_finetune exited {proc.returncode}: {tail[0]}")
    fold = (Path(os.environ["nnUNet_results"]) / DATASET
            / "SupremFinetuneTrainer__suprem_unet_preset-suprem__3d_fullres" / "fold_all")
    mapping = fold / "head_mapping.json"
    final = load_training_checkpoint(fold / "checkpoint_final.pth", "cpu")
    losses = [float(v) for v in final["logging"]["train_losses"]]
    val = [float(v) for v in final["logging"]["val_losses"]]
    if not mapping.is_file():
        raise RuntimeError(f"{mapping}: not written")
    if not (losses and all(np.isfinite(losses + val))):
        raise RuntimeError(f"losses not finite: train {losses}, validation {val}")
    plans = json.loads((fold.parent / "plans.json").read_text())["configurations"]["3d_fullres"]
    rows = json.loads(mapping.read_text())
    return {"command": "suprem_finetune " + " ".join(argv), "seconds": round(wall, 1),
            "patch_size": plans["patch_size"], "batch_size": plans["batch_size"],
            "train_loss": losses, "val_loss": val, "head_mapping_rows": len(rows) if isinstance(rows, list) else None,
            "head_mapping": str(mapping), "grad_scaler_state": final.get("grad_scaler_state") is not None}


# ---------------------------------------------------------------------------- e: torchrun
def part_torchrun(ctx: Context, remaining_s: float) -> Dict:
    _need_data(ctx)
    s = ctx.sizes
    runs = []
    for epochs, resume in ((1, False), (2, True)):
        result = ctx.out / f"torchrun_epochs{epochs}.json"
        result.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               "-m", "suprem_nnunet.benchmarks.gpu_ddp", "--device", ctx.device, "--dataset", DATASET,
               "--plans", PLANS, "--epochs", str(epochs), "--iterations", str(s.ddp_iterations),
               "--seed", str(ctx.seed), "--result", str(result)] + ([] if resume else ["--no-resume"])
        t = time.perf_counter()
        with open(ctx.log_file, "a") as logf:
            proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.PIPE, text=True,
                                  timeout=max(30.0, remaining_s))
        wall = time.perf_counter() - t
        if proc.returncode != 0 or not result.is_file():
            tail = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
            raise RuntimeError(f"torchrun (epochs {epochs}) exited {proc.returncode}: {tail[0]}")
        runs.append({**json.loads(result.read_text()), "wall_s": round(wall, 1)})
    first, second = runs
    checks = {"ddp_wrapped": first["ddp_wrapped"] and second["ddp_wrapped"],
              "resumed_from_final": second.get("resumed_from") == "checkpoint_final.pth"
              and second.get("resumed_epoch") == 1,
              "second_run_reached_epoch_2": second["current_epoch"] == 2,
              "losses_finite": all(np.isfinite(first["train_losses"] + second["train_losses"]))}
    bad = [k for k, v in checks.items() if not v]
    if bad:
        raise RuntimeError(f"torchrun: check(s) failed: {', '.join(bad)} ({runs})")
    return {"runs": runs, **checks}


# ---------------------------------------------------------------------------- running the parts
def _append_traceback(ctx: Context, where: str) -> None:
    with open(ctx.log_file, "a") as f:
        f.write(f"\n--- {where} failed ---\n{traceback.format_exc()}\n")


def run_part(name: str, fn: Callable[[], Dict], ctx: Context) -> Dict:
    """fn()'s figures with status ok, or status failed with the error's one line; seconds either way.
    nnU-Net's prints go to the log file."""
    t = time.perf_counter()
    try:
        with open(ctx.log_file, "a") as logf, contextlib.redirect_stdout(logf):
            figures = fn()
        row = {"status": "ok", **figures}
    except PartFailed as e:
        row = {**e.figures, "status": "failed", "error": str(e)}
    except Exception as e:
        _append_traceback(ctx, name)
        msg = str(e).strip().splitlines()
        row = {"status": "failed", "error": f"{type(e).__name__}: {msg[0] if msg else ''}"}
    row["seconds"] = round(time.perf_counter() - t, 1)
    gc.collect()
    try:
        import torch

        if ctx.device == "cuda":
            torch.cuda.empty_cache()
    except Exception:  # a broken CUDA context is already recorded by the part
        pass
    print(f"[gpu benchmark] {name}: {row['status']} in {row['seconds']} s"
          + (f" ({row['error']})" if row["status"] == "failed" else ""), file=sys.stderr, flush=True)
    return row


def environment(device: str) -> Dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
           "device": device, "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA"),
           "nnUNet_compile": os.environ.get("nnUNet_compile")}
    for pkg in ("nnunetv2", "monai", "SimpleITK", "blosc2"):
        try:
            from importlib.metadata import version

            env[pkg] = version(pkg.lower() if pkg != "SimpleITK" else "SimpleITK")
        except Exception:
            env[pkg] = None
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update({"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2 ** 30, 1),
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    return env


def format_table(report: Dict) -> List[str]:
    """One line per part with its headline figures."""
    p = report["parts"]
    lines = [f"GPU benchmark on {report['environment'].get('gpu', report['environment']['device'])} "
             f"({'dry run' if report['config']['dry_run'] else 'full sizes'}), {report['wall_s']} s of "
             f"{report['config']['budget_s']} s budget"]

    def head(name: str) -> str:
        r = p.get(name, {})
        return f"{name:<9} {r.get('status', 'not run'):<7} {r.get('seconds', 0):>6} s  "

    def fig(v, unit: str = "") -> str:
        return "n/a" if v is None else f"{v}{unit}"

    def preset(r: Dict) -> str:
        if "iterations_per_s" not in r:
            return r.get("status", "?")
        return (f"{r['iterations_per_s']} it/s, {fig(r['peak_gpu_memory_gib'], ' GiB')}, "
                f"{r['flops_per_iteration'] / 1e12:.2f} TFLOP/it, MFU {fig(r.get('mfu'))}")

    for name in ("data", *PARTS):
        if name not in p:
            continue
        r = p[name]
        line = head(name)
        if r.get("status") == "ok" or name == "presets":
            if name == "data" and "plan" in r:
                line += f"plan patch {r['plan']['patch_size']} batch {r['plan']['batch_size']}"
            elif name == "trainers" and "nnUNetTrainer" in r:
                a, b = r["nnUNetTrainer"], r["SupremPretrainer"]
                line += (f"it/s nnU-Net {a['iterations_per_s']} ours {b['iterations_per_s']} ratio "
                         f"{r['ratio_ours_over_stock']} (goal >= 0.95); peak GiB {fig(a['peak_gpu_memory_gib'])} / "
                         f"{fig(b['peak_gpu_memory_gib'])}; data wait {a['data_wait_share']:.1%} / "
                         f"{b['data_wait_share']:.1%}")
            elif name == "presets":
                line += "; ".join(f"{b} {preset(r[b])}" for b in PRESET_BACKBONES if b in r)
            elif name == "predict":
                line += (f"ours {r['ours_s']} s, nnU-Net {r['nnunet_s']} s, ratio {r['time_ratio']}, min DSC "
                         f"{r['min_dsc']} over {r['classes_compared']} classes")
            elif name == "finetune":
                line += (f"train loss {[round(v, 4) for v in r['train_loss']]}, val loss "
                         f"{[round(v, 4) for v in r['val_loss']]}, head_mapping.json written")
            elif name == "torchrun":
                line += (f"backend {r['runs'][0]['backend']}, world {r['runs'][0]['world_size']}, resumed from "
                         f"epoch {r['runs'][1]['resumed_epoch']} to {r['runs'][1]['current_epoch']}")
        elif r.get("status") == "failed":
            line += r["error"]
        elif r.get("status") == "skipped":
            line += r["reason"]
        lines.append(line)
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m suprem_nnunet.benchmarks gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--out", default="gpu_benchmark", help="work folder (data, runs, results.json, benchmark.log)")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="seconds for the whole run; a part whose estimate exceeds what is left is skipped")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes (the CPU check of the same code)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense fp16/bf16 peak for the MFU (default: by GPU name, see PEAK_TFLOPS)")
    p.add_argument("--compile", action="store_true", help="let nnU-Net's trainers torch.compile (nnUNet_compile=t)")
    p.add_argument("--require", action="append", default=[], help=argparse.SUPPRESS)  # extra packages (tests)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out).absolute()
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):  # before nnunetv2 is imported
        os.environ[var] = str(out / "nnunet" / var)
    try:
        if args.budget_s <= 0:
            raise InputError(f"--budget-s must be positive, got {args.budget_s}")
        check_packages([*REQUIRED_PACKAGES, *args.require], ENTRY_MODULES)
        check_device(args.device)
    except ValueError as e:
        print(f"benchmarks gpu: {e}", file=sys.stderr)
        return 1
    import torch


    start = time.perf_counter()
    setup_environment(str(out / "nnunet"))
    os.environ["nnUNet_compile"] = "t" if args.compile else "f"
    if args.device == "cuda":
        os.environ.setdefault("nnUNet_n_proc_DA", str(min(12, os.cpu_count() or 1)))
    else:
        os.environ["nnUNet_n_proc_DA"] = "0"
    sizes = DRY if args.dry_run else REAL
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else ""
    peak = args.peak_tflops or (peak_tflops(name) if args.device == "cuda" else None)
    ctx = Context(args.device, sizes, out, args.seed, peak, out / "benchmark.log")
    report: Dict = {"config": {"device": args.device, "dry_run": args.dry_run, "budget_s": args.budget_s,
                               "seed": args.seed, "parts": args.parts, "sizes": asdict(sizes),
                               "peak_tflops": peak, "peak_tflops_source": (
                                   "--peak-tflops" if args.peak_tflops else
                                   "NVIDIA datasheet, dense fp16/bf16 tensor core" if peak else None),
                               "h200_measured_matmul_tflops": H200_MEASURED_MATMUL_TFLOPS if "H200" in name else None},
                    "environment": environment(args.device), "parts": {}, "wall_s": 0.0}
    results = out / "results.json"

    def save() -> None:
        report["wall_s"] = round(time.perf_counter() - start, 1)
        atomic_write_json(results, report)

    def skip(part: str) -> bool:
        left = args.budget_s - (time.perf_counter() - start)
        if sizes.estimate_s[part] <= left:
            return False
        report["parts"][part] = {"status": "skipped", "seconds": 0.0,
                                 "reason": f"estimated {sizes.estimate_s[part]:.0f} s, {left:.0f} s of the "
                                           "budget left (--budget-s)"}
        print(f"[gpu benchmark] {part}: skipped ({report['parts'][part]['reason']})", file=sys.stderr)
        return True

    if set(args.parts) & set(NEEDS_DATA):
        if not skip("data"):
            report["parts"]["data"] = run_part("data", lambda: make_dataset(ctx), ctx)
        if report["parts"]["data"]["status"] != "ok":
            ctx.data_error = report["parts"]["data"].get("error") or report["parts"]["data"]["reason"]
        save()
    fns = {"trainers": lambda: part_trainers(ctx), "presets": lambda: part_presets(ctx),
           "predict": lambda: part_predict(ctx),
           "finetune": lambda: part_finetune(ctx, args.budget_s - (time.perf_counter() - start)),
           "torchrun": lambda: part_torchrun(ctx, args.budget_s - (time.perf_counter() - start))}
    for part in PARTS:
        if part in args.parts and not skip(part):
            report["parts"][part] = run_part(part, fns[part], ctx)
        save()
    if "H200" in name:
        for b in PRESET_BACKBONES:
            row = report["parts"].get("presets", {}).get(b, {})
            if "achieved_tflops" in row:
                row["mfu_vs_measured_matmul"] = round(row["achieved_tflops"] / H200_MEASURED_MATMUL_TFLOPS, 4)
    save()
    for line in format_table(report):
        print(line)
    print(f"results: {results}")
    ran = [r for r in report["parts"].values() if r["status"] != "skipped"]
    return 0 if all(r["status"] == "ok" for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
