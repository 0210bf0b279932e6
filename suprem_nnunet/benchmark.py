"""Benchmarks for the speed targets: `python -m suprem_nnunet.benchmark [--backbones ...] [--patch 96]`.

* phantom generation: seconds per 64^3 case (target: <= 1 s);
* per backbone: parameter count, planner memory estimate, and the wall time of one training
  iteration (forward + backward + SGD step, batch 1) at the given patch on this machine's CPU
  (or GPU with --device cuda).
Prints a table and writes JSON (``--json FILE``).
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Dict, List, Optional, Sequence


def bench_phantom(n: int = 3) -> float:
    from .synth import PhantomGenerator

    PhantomGenerator(0)((64, 64, 64), (5, 5, 5))  # warm-up (imports, caches)
    t = time.perf_counter()
    for i in range(n):
        PhantomGenerator(i + 1)((64, 64, 64), (5, 5, 5))
    return (time.perf_counter() - t) / n


def bench_backbone(name: str, patch: int, iterations: int, device: str, num_classes: int = 32) -> Dict:
    import torch

    from .networks import network_class
    from .networks.registry import get_backbone

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suprem_nnunet.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="*", default=["segresnet", "unet", "swinunetr"])
    p.add_argument("--patch", type=int, default=96)
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows: List[Dict] = [{"benchmark": "phantom 64^3", "seconds_per_case": round(bench_phantom(), 3)}]
    print(f"phantom 64^3: {rows[0]['seconds_per_case']:.3f} s per case (target <= 1 s)")
    for name in args.backbones:
        r = bench_backbone(name, args.patch, args.iterations, args.device)
        rows.append(r)
        print(f"{name:<10} {r['params']:>11,} params (paper {r['paper']})  {args.patch}^3 batch 1 on "
              f"{args.device}: {r['seconds_per_iteration']:.2f} s/iteration, "
              f"estimated training memory {r['estimated_training_memory_gib']} GiB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
