"""GPU check: SuPreM-preset U-Net pre-training speed and memory (`python -m suprem_nnunet.benchmarks_gpu`).

Sized for about 10 minutes on one H100 (most of it start-up and phantom synthesis): the SuPreM
U-Net with the release's settings (`plans/suprem_unet.json`: 96^3 patches, base 32 features,
batch-statistics batch norm), 32 output classes, pre-trained for `--iterations` (100) iterations
on CT phantoms with automatic mixed precision (float16 autocast + GradScaler on CUDA), with the
partial-label Dice + CE loss and AdamW (SuPreM's optimiser). Batches are random patches of
phantoms held in memory, mirrored at random, copied to the device from pinned memory.

Printed: iterations/s (after `--warmup` iterations), peak GPU memory
(`torch.cuda.max_memory_allocated`, and the reserved peak), and the data-loading share: the time to
crop and copy each batch over the whole iteration time. Without a CUDA device it refuses with one
line; `--device cpu --iterations 2 --patch 32` is a dry run of the same code on CPU (bfloat16
autocast, peak RSS instead of GPU memory). `--json FILE` writes the result row.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)

HU_WINDOW = (-175.0, 250.0)  # the SuPreM preset's clip, scaled to [0, 1]


@dataclass(frozen=True)
class GPUBenchConfig:
    device: str = "cuda"
    iterations: int = 100
    warmup: int = 5
    patch: int = 96
    batch_size: int = 2
    phantoms: int = 8
    phantom_spacing: float = 3.0  # mm; phantoms of (patch + 16) voxels per axis
    amp: bool = True
    lr: float = 1e-4  # SuPreM's AdamW learning rate
    seed: int = 0


def check_device(device: str) -> None:
    """ValueError (one line) unless `device` can run: a CUDA device must be present for 'cuda'."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("no CUDA device is present (torch.cuda.is_available() is False); this check needs one "
                         "GPU, or run a CPU dry run with --device cpu --iterations 2 --patch 32")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--device {device!r}: expected cuda, cuda:N or cpu")


def make_phantoms(n: int, size: int, spacing: float, seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """`n` phantoms of `size`^3 voxels: (image scaled to [0, 1] by the preset's HU window (float32),
    label with AbdomenAtlas ids 1..32 (uint8))."""
    from .labels.table import ATLAS_CLASSES, ATLAS_IDS
    from .synth import PHANTOM_CLASSES, PhantomGenerator

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


def run_benchmark(cfg: GPUBenchConfig) -> Dict:
    """Pre-train the SuPreM-preset U-Net for `cfg.iterations` iterations; one result row."""
    import torch

    from .labels.table import ATLAS_CLASSES
    from .networks import network_class
    from .training.base import hosted_channel_pairs
    from .training.loss import PartialLabelDiceCELoss
    from .zoo.presets import load_preset

    check_device(cfg.device)
    if cfg.iterations < 1 or cfg.warmup < 0 or cfg.batch_size < 1 or cfg.phantoms < 1 or cfg.patch < 8 \
            or cfg.patch % 8:
        raise ValueError("need --iterations >= 1, --warmup >= 0, --batch-size >= 1, --phantoms >= 1 and a "
                         "--patch that is a multiple of 8 (the U-Net pools 3 times)")
    torch.manual_seed(cfg.seed)
    cuda = cfg.device.startswith("cuda")
    device = torch.device(cfg.device)
    if cuda:
        torch.backends.cudnn.benchmark = True
    preset = load_preset("unet")
    t = time.perf_counter()
    phantoms = make_phantoms(cfg.phantoms, cfg.patch + 16, cfg.phantom_spacing, cfg.seed)
    synth_s = time.perf_counter() - t
    classes = len(ATLAS_CLASSES)
    net = network_class("unet")(input_channels=1, num_classes=classes + 1, deep_supervision=False,
                                **preset["arch_kwargs"]).to(device)
    loss_fn = PartialLabelDiceCELoss(batch_dice=True, hosted=hosted_channel_pairs(list(ATLAS_CLASSES)))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-5)
    amp_dtype = torch.float16 if cuda else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and cuda)
    rng = np.random.default_rng(cfg.seed)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    data_s = total_s = 0.0
    losses = []
    net.train()
    for it in range(cfg.warmup + cfg.iterations):
        sync()
        t0 = time.perf_counter()
        x, y = random_batch(phantoms, cfg.batch_size, cfg.patch, rng)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        if cuda:
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        sync()
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=cfg.amp):
            loss = loss_fn(net(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        scaler.step(opt)
        scaler.update()
        sync()
        t2 = time.perf_counter()
        if it >= cfg.warmup:
            data_s += t1 - t0
            total_s += t2 - t0
            losses.append(float(loss.detach()))
        if not np.isfinite(losses[-1] if losses else 0.0):
            raise RuntimeError(f"iteration {it}: the loss is not finite ({losses[-1]})")
    row = {**asdict(cfg), "network": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters()),
           "classes": classes, "output_channels": classes + 1, "amp_dtype": str(amp_dtype).replace("torch.", "") if cfg.amp else "float32",
           "phantom_synthesis_s": round(synth_s, 1), "iterations_per_s": round(cfg.iterations / total_s, 3),
           "seconds_per_iteration": round(total_s / cfg.iterations, 4),
           "data_loading_share": round(data_s / total_s, 4), "loss_first": round(losses[0], 4),
           "loss_last": round(losses[-1], 4), "torch": torch.__version__,
           "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)}
    if cuda:
        row.update({"gpu": torch.cuda.get_device_name(device),
                    "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 1024 ** 3, 2),
                    "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved(device) / 1024 ** 3, 2)})
    return row


def format_row(r: Dict) -> str:
    mem = (f"peak GPU memory {r['peak_gpu_memory_gib']} GiB allocated ({r['peak_gpu_reserved_gib']} GiB reserved) "
           f"on {r['gpu']}" if "gpu" in r else f"peak RSS {r['peak_rss_gib']} GiB (CPU dry run)")
    return (f"{r['network']} ({r['parameters']:,} parameters, {r['classes']} classes + background), patch {r['patch']}^3, "
            f"batch {r['batch_size']}, {r['amp_dtype']} on {r['device']}: {r['iterations_per_s']} iterations/s "
            f"({r['seconds_per_iteration']} s each over {r['iterations']} after {r['warmup']} warm-up), "
            f"data loading {100 * r['data_loading_share']:.1f} % of the time; {mem}; "
            f"loss {r['loss_first']} -> {r['loss_last']}")


def build_parser() -> argparse.ArgumentParser:
    d = GPUBenchConfig()
    p = argparse.ArgumentParser(prog="python -m suprem_nnunet.benchmarks_gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=d.device, help="cuda (default), cuda:N, or cpu for a dry run")
    p.add_argument("--iterations", type=int, default=d.iterations)
    p.add_argument("--warmup", type=int, default=d.warmup, help="iterations before timing starts")
    p.add_argument("--patch", type=int, default=d.patch, help="voxels per axis (a multiple of 8)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--phantoms", type=int, default=d.phantoms, help="phantom cases to crop patches from")
    p.add_argument("--no-amp", action="store_true", help="float32 instead of mixed precision")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--json", default=None, help="write the result row to this file")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = GPUBenchConfig(device=args.device, iterations=args.iterations, warmup=args.warmup, patch=args.patch,
                         batch_size=args.batch_size, phantoms=args.phantoms, amp=not args.no_amp, seed=args.seed)
    try:
        row = run_benchmark(cfg)
    except ValueError as e:
        print(f"benchmarks_gpu: {e}", file=sys.stderr)
        return 1
    print(format_row(row), flush=True)
    if args.json:
        from .dataset.raw import atomic_write_json

        atomic_write_json(args.json, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
