"""suprem_synth: write an nnU-Net raw dataset of synthetic abdominal CT phantoms."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..synth.phantom import PHANTOM_CLASSES
from ..synth.profiles import BY_PROFILE
from .common import float_triple, int_triple, parser, run
from ..errors import InputError


def build_parser():
    p = parser("suprem_synth", __doc__)
    p.add_argument("-d", "--dataset-id", type=int, help="nnU-Net dataset id (1-999); required unless listing")
    p.add_argument("-n", "--name", help="dataset name (default: Phantom, or the source profile's name)")
    p.add_argument("--classes",
                   help=f"comma-separated classes to label, or 'all' (the default without a profile: "
                        f"{', '.join(PHANTOM_CLASSES)})")
    p.add_argument("--source-profile", metavar="NAME",
                   help="mimic a real source: label only its classes (others drawn as background) with its "
                        f"spacing, slice thickness, contrast phase and noise ({', '.join(BY_PROFILE)}; "
                        "see --list-profiles)")
    p.add_argument("--num-train", type=int, default=8)
    p.add_argument("--num-test", type=int, default=4)
    p.add_argument("--size", type=int_triple, help="voxels x,y,z or one number (default 64, or the profile's)")
    p.add_argument("--spacing", type=float_triple, help="mm x,y,z or one number (default 5, or the profile's)")
    p.add_argument("--orientation", default="LPS", help="axis directions, e.g. LPS, RAS, LAS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list-classes", action="store_true", help="print the classes the phantom draws and exit")
    p.add_argument("--list-profiles", action="store_true", help="print the source profiles and exit")
    return p


def _main(args) -> int:
    if args.list_classes:
        print("\n".join(PHANTOM_CLASSES))
        return 0
    from ..synth.profiles import get_profile, profile_table

    if args.list_profiles:
        print("\n".join(profile_table()))
        return 0
    profile = get_profile(args.source_profile) if args.source_profile is not None else None
    if args.dataset_id is None:
        raise InputError("-d/--dataset-id is required to write a dataset")
    from ..synth.dataset import PhantomDatasetConfig, make_phantom_dataset, make_profile_dataset

    if profile is not None:
        if args.classes is not None:
            raise InputError(f"--classes cannot be combined with --source-profile: profile {profile.name!r} "
                             f"labels {', '.join(profile.classes)}")
        folder = make_profile_dataset(args.dataset_id, profile, args.num_train, args.num_test, args.seed, args.name,
                                      args.size, args.spacing, args.orientation)
    else:
        spec = args.classes or "all"
        classes = list(PHANTOM_CLASSES) if spec == "all" else [c for c in spec.split(",") if c]
        folder = make_phantom_dataset(PhantomDatasetConfig(
            args.dataset_id, args.name or "Phantom", classes, num_train=args.num_train, num_test=args.num_test,
            shape=args.size or [64, 64, 64], spacing=args.spacing or [5.0, 5.0, 5.0],
            orientation=args.orientation, seed=args.seed))
    print(folder)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
