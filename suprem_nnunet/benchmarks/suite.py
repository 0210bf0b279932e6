"""Benchmarks of the core stages: `python -m suprem_nnunet.benchmarks train|predict|preprocess|partial-labels|scale ...`.

`train` (the default):
* phantom generation: seconds per 64^3 case (target: <= 1 s);
* per backbone: parameter count, planner memory estimate, and the wall time of one training
  iteration (forward + backward + SGD step, batch 1) at the given patch on this machine's CPU
  (or GPU with --device cuda).
`predict`: our prediction data path vs nnunetv2's `nnUNetPredictor` defaults, side by side in one
process on the same model and CTs (the real CT in ../shared/data/real and synthetic 512x512xN
phantoms), mirroring off and on; prints wall time, peak memory, their ratios and per-class DSC.
`preprocess`: nnU-Net's `DefaultPreprocessor` with its own resampling vs ours, same cases.
`scale`: peak RSS and time per case of plan + preprocess + data loading for N phantom cases
(`--cases 100 500`), each N in a fresh process; see `scale.py`.
`partial-labels`: pre-training on merged partially labelled phantom sources with the marginal vs
the naive loss (and optionally `--sample-by`), scored on a fully labelled held-out set; see
`partial_labels.py`.
Prints a table and writes JSON (``--json FILE``). See `predict.py`.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Dict, List, Optional, Sequence

import torch

from ..synth import PhantomGenerator
from ..networks import network_class
from ..networks.registry import get_backbone
from . import predict as bp
from .partial_labels import DEFAULT_ARMS, DEFAULT_SOURCES, SAMPLING_ARMS, PartialBenchConfig, format_table, run_benchmark
from .scale import add_arguments, run_cli
from ..inference.backends import BackendConfig
from .backends import bench_windows, measure_peak
from ..models.trained import build_trained_network


def bench_phantom(n: int = 3) -> float:
    PhantomGenerator(0)((64, 64, 64), (5, 5, 5))  # warm-up (imports, caches)
    t = time.perf_counter()
    for i in range(n):
        PhantomGenerator(i + 1)((64, 64, 64), (5, 5, 5))
    return (time.perf_counter() - t) / n


def bench_backbone(name: str, patch: int, iterations: int, device: str, num_classes: int = 32) -> Dict:
    import torch


    b = get_backbone(name)
    cls = network_class(name)
    net = cls(input_channels=1, num_classes=num_classes, deep_supervision=False, **b.default_arch_kwargs).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99, nesterov=True)
    x = torch.randn(1, 1, patch, patch, patch, device=device)
    y = torch.randint(0, num_classes, (1, patch, patch, patch), device=device)
    times = []
    for _ in range(iterations + 1):  # the first one warms up
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    mem = cls.training_memory_bytes((patch,) * 3, 1, 1, num_classes, **b.default_arch_kwargs)
    return {"backbone": name, "params": sum(p.numel() for p in net.parameters()), "paper": b.paper_params,
            "patch": patch, "device": device, "seconds_per_iteration": min(times[1:]),
            "estimated_training_memory_gib": round(mem / 1024 ** 3, 2)}


def train_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbones", nargs="*", default=["segresnet", "unet", "swinunetr"])
    p.add_argument("--patch", type=int, default=96)
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)


def run_train(args) -> List[Dict]:
    rows: List[Dict] = [{"benchmark": "phantom 64^3", "seconds_per_case": round(bench_phantom(), 3)}]
    print(f"phantom 64^3: {rows[0]['seconds_per_case']:.3f} s per case (target <= 1 s)")
    for name in args.backbones:
        r = bench_backbone(name, args.patch, args.iterations, args.device)
        rows.append(r)
        print(f"{name:<10} {r['params']:>11,} params (paper {r['paper']})  {args.patch}^3 batch 1 on "
              f"{args.device}: {r['seconds_per_iteration']:.2f} s/iteration, "
              f"estimated training memory {r['estimated_training_memory_gib']} GiB", flush=True)
    return rows


def data_parser(p: argparse.ArgumentParser, predict: bool) -> None:
    p.add_argument("--large-slices", type=int, default=600 if predict else 0,
                   help="slices of the large 512x512xN phantom, run with our path only (0: skip)")
    p.add_argument("--nnunet-slices", type=int, default=100,
                   help="slices of the 512x512xN phantom run on both paths (0: skip)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None)
    if predict:
        p.add_argument("--mirror", choices=["off", "on", "both"], default="both")
        p.add_argument("--step", type=float, default=0.5)
        p.add_argument("--patch", type=int, default=64)
        p.add_argument("--unet-features", type=int, default=8)
        p.add_argument("--repeat", type=int, default=1,
                       help="predict each case this many times per side, alternating; report medians")
        p.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "compile", "openvino", "auto"],
                       help="our network's backends, each benchmarked per window (time, GFLOP/s, %% of a conv3d peak "
                            "measured in the same run) and per case against nnU-Net")
        p.add_argument("--windows-only", action="store_true",
                       help="with --backends: only the peak and the per-window rows, no whole-case prediction")
        p.add_argument("--window-network", choices=["band", "unet", "segresnet", "swinunetr"], default="band",
                       help="the network of the per-window rows: the benchmark model's (band) or a backbone at "
                            "its release widths (random weights, 33 outputs) on a --patch window")
        p.add_argument("--bf16", choices=["auto", "on", "off"], default="off",
                       help="our network in bfloat16 on CPU (auto: where the CPU has native bf16); nnU-Net's "
                            "stays float32")


def run_data(args, predict: bool) -> List[Dict]:
    import logging

    import torch


    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = bp.temp_folder()
    cases = bp.default_cases(folder, args.large_slices, args.nnunet_slices)
    if predict:
        mirrors = {"off": [False], "on": [True], "both": [False, True]}[args.mirror]
        bf16 = {"auto": None, "on": True, "off": False}[args.bf16]
        rows = bench_backends(args, bf16) if args.backends != ["torch"] or args.windows_only else []
        for backend in ([] if args.windows_only else args.backends):
            rows += bp.bench_predict(cases, mirrors, args.step, args.patch, args.unet_features, bf16,
                                     repeat=max(1, args.repeat), backend=BackendConfig(backend))
        for r in rows:
            if r["benchmark"] != "predict":
                continue
            ratio = (f"time x{r['time_ratio']} (CPU time x{r['cpu_ratio']}"
                     + (f"; {r['repeats']} pairs: x{min(r['time_ratio_range'])}-x{max(r['time_ratio_range'])}"
                        if r.get("time_ratio_range") else "") + f"), min DSC {r['min_dsc']} over "
                     f"{r['classes_compared']} classes, masks equal: {r['masks_equal']}") if "time_ratio" in r else ""
            print(f"predict {r['backend']:<8} {r['case']:<38} mirror {'on ' if r['mirroring'] else 'off'} ours "
                  f"({'bf16' if r['ours_bf16'] else 'fp32'}, {r['windows_run']} windows run, {r['windows_skipped']} "
                  f"skipped) {r['ours_s']:8.1f} s peak RSS {r['ours_peak_gib']:6.2f} GiB"
                  + (f" | nnU-Net {r['nnunet_s']:8.1f} s peak RSS {r['nnunet_peak_gib']:6.2f} GiB | {ratio}"
                     if ratio else ""), flush=True)
    else:
        rows = bp.bench_preprocess([(n, f) for n, f, _ in cases])
        for r in rows:
            labels = (f"; labels: min DSC {r['label_min_dsc']}, {r['label_voxels_differing']} of voxels differ"
                      if r["labels"] else "")
            print(f"preprocess {r['case']:<38} nnU-Net {r['nnunet_s']:7.2f} s ours {r['ours_s']:7.2f} s "
                  f"speed-up x{r['speedup']} | max |diff| {r['max_abs_diff_over_range']} of the intensity range"
                  + labels, flush=True)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return rows


def window_network_factory(args):
    """A function giving a fresh eval-mode copy (same weights) of the per-window network: the benchmark
    model's, or `--window-network`'s backbone at its default (release) widths with 33 outputs."""
    if getattr(args, "window_network", "band") == "band":
        model = bp.benchmark_model(patch=args.patch, unet_features=args.unet_features)
        return lambda: build_trained_network(model).eval()
    b = get_backbone(args.window_network)
    torch.manual_seed(0)
    reference = network_class(b.name)(input_channels=1, num_classes=33, deep_supervision=False,
                                      **b.default_arch_kwargs).eval()
    return lambda: copy.deepcopy(reference)


def bench_backends(args, bf16) -> List[Dict]:
    """The peak conv3d and one row per backend for the benchmark model's network at --patch."""

    if bf16:
        raise ValueError("--backends compares float32 backends; drop --bf16")
    peak = measure_peak()
    print(f"peak: oneDNN conv3d float32, best of {peak['by_shape']} GFLOP/s: {peak['gflops']:.1f} GFLOP/s "
          f"({peak['shape']})", flush=True)
    rows = [peak] + bench_windows(window_network_factory(args), (args.patch,) * 3, args.backends,
                                  peak_gflops=peak["gflops"])
    for r in rows[1:]:
        print(f"window {r['backend']:<8} {r['patch']} {r['threads']} thread(s): {r['window_s']:.3f} s "
              f"({r['gflop_per_window']} GFLOP, {r['gflops']} GFLOP/s, {r['pct_of_peak']} % of peak; first call "
              f"{r['first_s']} s; max |Δ logits| / max |logit| {r['relative_error']}"
              + (f"; auto chose {r['chosen']}" if "chosen" in r else "") + ")", flush=True)
    return rows


def partial_parser(p: argparse.ArgumentParser) -> None:
    d = PartialBenchConfig()
    p.add_argument("--out", default=str(d.out), help="work folder (data, runs, predictions, results.json)")
    p.add_argument("--sources", nargs="+", default=[f"{n}:{k}" for n, k in DEFAULT_SOURCES],
                   help="source profiles with their number of training cases, PROFILE:N; a custom source is "
                        "LABEL=class+class:N (those classes labelled, BTCV's grid), e.g. a=liver+spleen:12")
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS),
                   help=f"LOSS[:SAMPLE_BY] per run, e.g. {' '.join(DEFAULT_ARMS + SAMPLING_ARMS)}")
    p.add_argument("--with-sampling", action="store_true", help=f"also run {' and '.join(SAMPLING_ARMS)}")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--iterations-per-epoch", type=int, default=d.iterations_per_epoch)
    p.add_argument("--num-test", type=int, default=d.num_test, help="fully labelled held-out cases")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--jobs", type=int, default=d.jobs,
                   help="arms trained at once, each in its own process (2 CPU cores: --jobs 2 --threads 1)")
    p.add_argument("--device", default=d.device)
    p.add_argument("--left-right-mirroring", default=d.left_right_mirroring, choices=["swap", "omit", "nnunet"],
                   help="mirroring along the left-right axis in training (planning/mirroring.py)")
    p.add_argument("--json", default=None)


def run_partial(args) -> List[Dict]:
    import logging
    import os

    import torch


    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    sources = []
    for s in args.sources:
        name, _, n = s.rpartition(":")
        if not n.isdigit() or int(n) < 1:
            raise SystemExit(f"partial-labels: --sources {s!r}: expected PROFILE:N with N >= 1")
        sources.append((name, int(n)))
    arms = tuple(dict.fromkeys([*args.arms, *(SAMPLING_ARMS if args.with_sampling else ())]))
    cfg = PartialBenchConfig(out=args.out, sources=tuple(sources), arms=arms, epochs=args.epochs,
                             iterations_per_epoch=args.iterations_per_epoch, num_test=args.num_test,
                             seed=args.seed, device=args.device, jobs=args.jobs, threads=args.threads,
                             left_right_mirroring=args.left_right_mirroring)
    try:
        report = run_benchmark(cfg)
    except ValueError as e:
        raise SystemExit(f"partial-labels: {e}") from None
    for line in format_table(report["rows"], report["summary"]):
        print(line)
    load = report["load_average"]
    print(f"wall time {report['wall_s']:.0f} s on {os.cpu_count()} CPUs (load average {load['start']} at start, "
          f"{load['end']} at end); stages: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in report["config"]["timings"].items()))
    return [report]


def scale_parser(p: argparse.ArgumentParser) -> None:
    add_arguments(p)


def run_scale(args) -> List[Dict]:
    return run_cli(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train", "predict", "preprocess", "partial-labels", "scale", "-h", "--help"):
        argv = ["train", *argv]  # no subcommand: train
    p = argparse.ArgumentParser(prog="python -m suprem_nnunet.benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    train_parser(sub.add_parser("train", help="phantom generation and one training iteration per backbone"))
    data_parser(sub.add_parser("predict", help="prediction: ours vs nnUNetPredictor"), True)
    data_parser(sub.add_parser("preprocess", help="preprocessing: ours vs DefaultPreprocessor"), False)
    partial_parser(sub.add_parser("partial-labels", help="pre-training with the marginal vs the naive loss"))
    scale_parser(sub.add_parser("scale", help="peak RSS and time per case of plan + preprocess + loading vs N"))
    args = p.parse_args(argv)
    if args.command == "partial-labels":
        rows = run_partial(args)
    elif args.command == "scale":
        rows = run_scale(args)
    else:
        rows = run_train(args) if args.command == "train" else run_data(args, args.command == "predict")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def command(name: str):
    """`main` with subcommand `name` first: the entry point `python -m suprem_nnunet.benchmarks <name>` calls."""
    def run(argv: Optional[Sequence[str]] = None) -> int:
        return main([name, *(argv or [])])

    return run


train_main, predict_main, preprocess_main = command("train"), command("predict"), command("preprocess")
partial_labels_main, scale_main = command("partial-labels"), command("scale")
