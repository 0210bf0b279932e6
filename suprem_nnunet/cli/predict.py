"""suprem_predict: segment CT files with a trained model, in each input's exact geometry."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .common import parser, run


def build_parser():
    p = parser("suprem_predict", __doc__)
    p.add_argument("-i", "--input", required=True, help="image file or folder of images (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-m", "--model", required=True,
                   help="model folder, checkpoint file, or zoo name (an imported model or released checkpoint)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--mirror", dest="mirror", action="store_true", default=None,
                   help="test-time mirroring (default: on for CUDA, off for CPU)")
    g.add_argument("--no-mirror", dest="mirror", action="store_false")
    p.add_argument("--step-size", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    p.add_argument("--per-class", action="store_true", help="also write one binary mask per class")
    return p


def _main(args) -> int:
    from ..inference.predict import predict, predict_with_release, resolve_model
    from ..training.run import resolve_device

    if not 0 < args.step_size <= 1:
        raise ValueError(f"--step-size must be in (0, 1], got {args.step_size}")
    model, device = resolve_model(args.model), str(resolve_device(args.device))
    if isinstance(model, str):  # released checkpoint: the paper's direct-inference protocol
        written = predict_with_release(args.input, args.output, model, device, args.per_class)
    else:
        written = predict(args.input, args.output, model, device, args.mirror, args.step_size, args.per_class)
    for f in written:
        print(f)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
