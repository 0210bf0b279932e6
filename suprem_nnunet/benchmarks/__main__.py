"""`python -m suprem_nnunet.benchmarks <name> [args]`: run one benchmark by name.

Each entry of BENCHMARKS maps a name to "module:function" (a `main(argv) -> int`); the module is
imported only when its benchmark runs, so a benchmark's heavy imports cost the others nothing.
"""
from __future__ import annotations

import importlib
import sys
from typing import Dict, Optional, Sequence

#: name -> (entry point "module:function", one-line description)
BENCHMARKS: Dict[str, tuple] = {
    "train": ("suprem_nnunet.benchmarks.suite:train_main",
              "phantom generation and one training iteration per backbone"),
    "mirroring-real": ("suprem_nnunet.benchmarks.mirroring_real:main",
                       "left/right mirroring policies on the real CT (a training-set fit per policy and seed)"),
    "predict": ("suprem_nnunet.benchmarks.suite:predict_main", "prediction: ours vs nnU-Net's nnUNetPredictor"),
    "preprocess": ("suprem_nnunet.benchmarks.suite:preprocess_main",
                   "preprocessing: ours vs nnU-Net's DefaultPreprocessor"),
    "partial-labels": ("suprem_nnunet.benchmarks.suite:partial_labels_main",
                       "pre-training on partially labelled sources: marginal vs naive loss"),
    "scale": ("suprem_nnunet.benchmarks.suite:scale_main",
              "peak RSS and time per case of plan + preprocess + loading vs number of cases"),
    "flywheel": ("suprem_nnunet.benchmarks.flywheel:main",
                 "annotation flywheel: revise the top-ranked cases vs random ones, budget-matched"),
    "gpu": ("suprem_nnunet.benchmarks.gpu:main",
            "GPU acceptance run: nnU-Net vs ours, presets' MFU, CUDA prediction, fine-tuning, torchrun"),
    "release-roi": ("suprem_nnunet.benchmarks.release_roi:main",
                    "a released SuPreM U-Net's direct inference with --roi-subset on a 244x202x224 grid, per overlap"),
    "roi": ("suprem_nnunet.benchmarks.roi:main",
            "fast --roi-subset (coarse pass, then the run on the cropped input) vs the full run on a 512x512x300 phantom"),
}


def usage() -> str:
    names = "\n".join(f"  {n:<15} {d}" for n, (_, d) in sorted(BENCHMARKS.items()))
    return f"usage: python -m suprem_nnunet.benchmarks <name> [args]   (<name> -h for its options)\n{names}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"benchmarks: unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}", file=sys.stderr)
        return 2
    module, _, function = BENCHMARKS[name][0].partition(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
