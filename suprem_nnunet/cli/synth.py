"""suprem_synth: write an nnU-Net raw dataset of synthetic abdominal CT phantoms."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..synth.phantom import PHANTOM_CLASSES
from .common import float_triple, int_triple, parser, run


def build_parser():
    p = parser("suprem_synth", __doc__)
    p.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    p.add_argument("-n", "--name", default="Phantom", help="dataset name")
    p.add_argument("--classes", default="all",
                   help=f"comma-separated classes to label, or 'all' ({', '.join(PHANTOM_CLASSES)})")
    p.add_argument("--num-train", type=int, default=8)
    p.add_argument("--num-test", type=int, default=4)
    p.add_argument("--size", type=int_triple, default=[64, 64, 64], help="voxels x,y,z (or one number)")
    p.add_argument("--spacing", type=float_triple, default=[5.0, 5.0, 5.0], help="mm x,y,z (or one number)")
    p.add_argument("--orientation", default="LPS", help="axis directions, e.g. LPS, RAS, LAS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list-classes", action="store_true", help="print the classes the phantom draws and exit")
    return p


def _main(args) -> int:
    if args.list_classes:
        print("\n".join(PHANTOM_CLASSES))
        return 0
    from ..synth.dataset import make_phantom_dataset

    classes = list(PHANTOM_CLASSES) if args.classes == "all" else [c for c in args.classes.split(",") if c]
    folder = make_phantom_dataset(args.dataset_id, args.name, classes, args.num_train, args.num_test,
                                  args.size, args.spacing, args.orientation, args.seed)
    print(folder)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
