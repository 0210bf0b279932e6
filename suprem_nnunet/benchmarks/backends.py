"""Per-backend window benchmark: time per window, GFLOP/s and the share of a peak measured in the same run.

The peak is oneDNN's float32 3D convolution (3x3x3, batch 1) at the best of three shapes of full-size
U-Net stages (`PEAK_SHAPES`: 64 channels on 64^3, 128 on 48^3, 32 on 96^3; `measure_peak`). It is a
measured reference, not the hardware's bound: a backend with better kernels can exceed it. A network's work per window is counted by
`torch.utils.flop_counter.FlopCounterMode` on its torch forward pass with PyTorch's own convolutions (convolutions and matrix products;
norms and activations count 0), so GFLOP/s = counted FLOPs / seconds per window, on every backend.
Times are medians of `repeat` runs after one untimed run (which pays the export or compile; its time is
reported as `first_s`).
"""
from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..inference.backends import BackendConfig, make_backend, relative_error
from ..inference.onednn import use_onednn_convolutions

log = logging.getLogger(__name__)


def count_flops(network: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass (FlopCounterMode: convolutions and matrix products)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        network(x)
    return int(fc.get_total_flops())


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


#: (channels, side) of the conv3d shapes the peak is the best of: full-size U-Nets' stages at 96^3-128^3
PEAK_SHAPES = ((64, 64), (128, 48), (32, 96))


def _conv_gflops(channels: int, side: int, repeat: int) -> float:
    torch.manual_seed(0)
    conv = nn.Conv3d(channels, channels, 3, padding=1, bias=False).eval()
    x = torch.randn(1, channels, side, side, side)
    flops = count_flops(conv, x)  # before the switch: FlopCounterMode does not count aten::mkldnn_convolution
    use_onednn_convolutions(conv)
    with torch.inference_mode():
        conv(x)
        sec = _median_seconds(lambda: conv(x), repeat)
    return flops / sec / 1e9


def measure_peak(repeat: int = 5, shapes: Sequence = PEAK_SHAPES) -> Dict:
    """GFLOP/s of oneDNN's float32 conv3d (channels -> channels, 3x3x3, side^3, batch 1) at the best of
    `shapes`: the reference peak (each shape's GFLOP/s under `by_shape`)."""
    by_shape = {f"{c}->{c} 3x3x3 on {s}^3": round(_conv_gflops(c, s, repeat), 1) for c, s in shapes}
    best = max(by_shape, key=by_shape.get)
    return {"benchmark": "peak conv3d", "shape": best, "gflops": by_shape[best], "by_shape": by_shape}


def bench_windows(network_factory, patch: Sequence[int], backends: Sequence[str], repeat: int = 3,
                  cache_dir=None, peak_gflops: Optional[float] = None) -> List[Dict]:
    """One row per backend: seconds per window, GFLOP/s, % of `peak_gflops`, max |Δ logits| / max |logit|
    against torch float32. `network_factory()` gives a fresh eval-mode network (same weights each call)."""
    x = torch.randn(1, 1, *patch, generator=torch.Generator().manual_seed(0))
    ref_net = network_factory()
    flops = count_flops(ref_net, x)
    with torch.inference_mode():
        want = ref_net(x)
    rows = []
    for name in backends:
        net = network_factory()
        if name == "torch":
            use_onednn_convolutions(net)
        run = make_backend(name, net, BackendConfig(name, cache_dir).cache_dir)
        with torch.inference_mode():
            t = time.perf_counter()
            got = run(x)
            first = time.perf_counter() - t
            sec = _median_seconds(lambda: run(x), repeat)
        row = {"benchmark": "window", "backend": name, "patch": list(patch), "threads": torch.get_num_threads(),
               "gflop_per_window": round(flops / 1e9, 2), "first_s": round(first, 2), "window_s": round(sec, 3),
               "gflops": round(flops / sec / 1e9, 1), "relative_error": float(f"{relative_error(got, want):.1e}")}
        if name == "auto":
            row["chosen"] = run.provenance()["backend"]
        if peak_gflops:
            row["pct_of_peak"] = round(100 * flops / sec / 1e9 / peak_gflops, 1)
        rows.append(row)
        log.info("%s", row)
    return rows
