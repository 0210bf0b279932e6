"""suprem_demo: the whole story on synthetic CT phantoms (pre-train, fine-tune vs scratch, evaluate)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from .common import parser, run, seed_int


def build_parser():
    p = parser("suprem_demo", __doc__)
    p.add_argument("--out", default="suprem_demo", help="folder for data, models, predictions and report.md")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--quick", action="store_true", help="smoke-sized run (about a minute); numbers mean nothing")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed of the phantoms, few-shot cases, weights, patches and augmentation; the same seed "
                        "gives the same table on the CPU")
    return p


def _main(args) -> int:
    from ..demo import DemoConfig, run_demo

    cfg = DemoConfig.quick(Path(args.out)) if args.quick else DemoConfig(out=Path(args.out))
    cfg.device, cfg.seed = args.device, args.seed
    report = run_demo(cfg)
    print(report.read_text())
    print(f"\nreport: {report}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
