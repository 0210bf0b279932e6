"""Part e of the GPU benchmark: one torchrun process training SupremPretrainer under DDP, then resuming.

Launched by `benchmarks/gpu.py` as `torchrun --standalone --nproc_per_node 1 -m suprem_nnunet.benchmarks.gpu_ddp
...`. The process group is joined here for any world size (the training CLI joins one only when
torchrun starts several processes, see training/ddp.py), with ddp.py's backend for the device (NCCL on
CUDA, gloo on CPU), so nnU-Net's trainer takes its DDP path: the network wrapped in
DistributedDataParallel, gradients all-reduced by NCCL. Training runs through `training.run.train`,
which resumes from the fold's most advanced checkpoint unless --no-resume. Rank 0 writes a JSON
result (atomically): backend, world size, whether the network was DDP-wrapped, the checkpoint it
resumed from and its epoch, the final epoch and the per-epoch training losses.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence
from ..dataset.raw import atomic_write_json
from ..seeding import seed_everything
from ..training import ddp
from ..training.base import SupremPretrainer, TrainingBudget
from ..networks.checkpoint import load_training_checkpoint
from ..training.resume import read_resume_checkpoint
from ..training.run import build_trainer, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun ... -m suprem_nnunet.benchmarks.gpu_ddp", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dataset", required=True)
    p.add_argument("--plans", required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--iterations", type=int, default=10, help="iterations per epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--result", required=True, help="JSON file rank 0 writes")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch
    from torch import distributed as dist


    device = torch.device(args.device)
    backend = ddp.backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(ddp.rank_device(device))
    dist.init_process_group(backend)
    try:
        seed_everything(args.seed)
        trainer = build_trainer(SupremPretrainer, args.dataset, args.plans, "3d_fullres", "all",
                                ddp.rank_device(device))
        fold = Path(trainer.output_folder)
        found = None if args.no_resume else read_resume_checkpoint(fold)
        out = train(trainer, TrainingBudget(epochs=args.epochs, iterations_per_epoch=args.iterations,
                                            val_iterations=1), resume=not args.no_resume, role="gpu-benchmark-ddp")
        final = load_training_checkpoint(out / "checkpoint_final.pth", "cpu")
        if dist.get_rank() == 0:
            atomic_write_json(args.result, {
                "backend": dist.get_backend(), "world_size": dist.get_world_size(), "is_ddp": bool(trainer.is_ddp),
                "ddp_wrapped": isinstance(trainer.network, torch.nn.parallel.DistributedDataParallel),
                "device": str(trainer.device), "grad_scaler": trainer.grad_scaler is not None,
                "resumed_from": found[0].name if found else None,
                "resumed_epoch": int(found[1]["current_epoch"]) if found else None,
                "current_epoch": int(final["current_epoch"]),
                "train_losses": [float(v) for v in final["logging"]["train_losses"]]})
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
