"""suprem_plan_and_preprocess: fingerprint, plan (per backbone) and preprocess a raw dataset."""
from __future__ import annotations

import json
import sys
from typing import Optional, Sequence

from ..networks.registry import BACKBONES
from ..planning.mirroring import DEFAULT_POLICY, POLICIES
from .common import int_triple, parser, positive_int, run


def build_parser():
    p = parser("suprem_plan_and_preprocess", __doc__)
    p.add_argument("-d", "--dataset", required=True, help="dataset id, name or DatasetNNN_Name")
    p.add_argument("-c", "--configurations", nargs="+", default=["3d_fullres"])
    p.add_argument("-b", "--backbone", default="nnunet", choices=sorted(BACKBONES))
    p.add_argument("-np", "--num-processes", type=positive_int, default=2)
    p.add_argument("--gpu-memory-gb", type=float, default=24.0, help="memory of one GPU the plan targets")
    p.add_argument("--num-gpus", type=positive_int, default=1,
                   help="plan for DDP on N GPUs in all (torchrun --nnodes x --nproc_per_node): the patch and per-GPU "
                        "batch fit one GPU's memory, the global batch is per-GPU batch x N")
    p.add_argument("--preset", choices=["suprem"], default=None,
                   help="take spacing, patch and intensity handling from the backbone's SuPreM-recipe preset")
    p.add_argument("--max-patch", type=int_triple, default=None, help="cap the patch size, e.g. 48 or 32,48,48")
    p.add_argument("--base-features", type=positive_int, default=None, help="features of the first stage")
    p.add_argument("--max-features", type=positive_int, default=None, help="cap of features per stage")
    p.add_argument("--batch-size", type=positive_int, default=None, help="fixed batch size per GPU")
    p.add_argument("--left-right-mirroring", choices=POLICIES, default=DEFAULT_POLICY,
                   help="with left/right classes, mirroring along the patient's left-right axis swaps the pairs' "
                        "labels (swap), leaves that axis out (omit) or keeps the labels (nnunet: nnU-Net's "
                        "default, for comparison); recorded in the plans")
    p.add_argument("--clean", action="store_true", help="extract the fingerprint again even if one exists")
    p.add_argument("--no-verify", action="store_true", help="skip nnU-Net's dataset integrity check")
    return p


def _main(args) -> int:
    from ..dataset.raw import resolve_dataset
    from ..planning.planner import PlanningCaps, plan_and_preprocess

    dataset = resolve_dataset(args.dataset)
    caps = PlanningCaps(tuple(args.max_patch) if args.max_patch else None, args.base_features,
                        args.max_features, args.batch_size)
    plans = plan_and_preprocess(dataset, args.backbone, args.configurations, caps, args.num_processes,
                                args.gpu_memory_gb, verify=not args.no_verify, preset=args.preset,
                                clean=args.clean, num_gpus=args.num_gpus,
                                left_right_mirroring=args.left_right_mirroring)
    for c in args.configurations:
        cfg = plans["configurations"][c]
        arch = cfg["architecture"]["arch_kwargs"]
        print(json.dumps({"dataset": dataset, "plans": plans["plans_name"], "configuration": c,
                          "spacing": cfg["spacing"], "patch_size": cfg["patch_size"],
                          "batch_size": cfg["batch_size"], "num_gpus": cfg.get("num_gpus", 1),
                          "batch_size_per_gpu": cfg.get("batch_size_per_gpu", cfg["batch_size"]),
                          "network": cfg["architecture"]["network_class_name"],
                          "features_per_stage": arch.get("features_per_stage"),
                          "estimated_training_memory_gb": cfg.get("estimated_training_memory_gb"),
                          "left_right_mirroring": plans["suprem"]["mirroring"]["policy"]}))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
