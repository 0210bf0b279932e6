"""One (shard of a) stub sweep of protocol fig1 for tests/test_sharding_sweep.py, run as its own process:
`python tests/sharding_sweep_script.py OUT K/N` (or `-` for the whole sweep). Training is a stub whose
rows depend only on the run; the pre-training goes through execute.pretrained_weights (its lock and
cache) with a slow stub `pretrain` that logs each time it is made to OUT/made.log."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, Optional

from suprem_nnunet.experiments import execute
from suprem_nnunet.experiments.data import DatasetInfo
from suprem_nnunet.experiments.execute import Context, Pretraining, RunSpec, pretrained_weights
from suprem_nnunet.experiments.protocol import load_protocol, protocol_file
from suprem_nnunet.experiments.runner import run_sweep
from suprem_nnunet.sharding import parse_shard

DATASETS = {931: DatasetInfo(931, "Dataset931_PhantomPretrain", 16, 0),
            932: DatasetInfo(932, "Dataset932_PhantomTarget", 10, 4)}
DIGESTS = {931: "d931", 932: "d932"}  # no dataset on disk: fixed digests


def slow_pretrain(ctx: Context, pre: Pretraining, folder: Path, num_cases: Optional[int] = None) -> Dict:
    with open(ctx.root / "made.log", "a") as f:
        f.write(f"{folder.name}\n")
    time.sleep(1.5)  # long enough for the other shard to arrive while it is being made
    ckpt = folder / "model" / "checkpoint_final.pth"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"weights")
    return {"checkpoint": str(ckpt), "seconds": 1.5, "cases": 16, "dataset": DATASETS[pre.dataset].name}


def stub_run(ctx: Context, spec: RunSpec, folder: Path) -> Dict:
    dsc = (0.8 if spec.arm == "suprem" else 0.5) + 0.01 * spec.trial + 0.001 * int(spec.setting)
    return {"rows": [{"case": f"c{i}", "class": "liver", "dsc": dsc - 0.1 * i, "nsd": dsc} for i in range(2)],
            "curve": [{"epoch": 1, "seconds": 1.0, "val_dsc_ema": dsc, "val_dsc": dsc}], "seconds": 1.0,
            "train_seconds": 1.0, "pretraining": {"cases": 16, "seconds": 1.5}, "target": "t"}


def prepare(ctx: Context, source: str, num_cases: Optional[int]) -> None:
    pretrained_weights(ctx, source, num_cases)


def main(out: str, shard: str, protocol_text: Optional[str] = None) -> Path:
    execute.make_pretraining = slow_pretrain
    p = load_protocol("fig1")
    ctx = Context(Path(out), "phantom", p.scale("phantom"), DATASETS, digests=dict(DIGESTS))
    return run_sweep(p, "phantom", Path(out), ctx, stub_run, 2, protocol_text or protocol_file("fig1").read_text(),
                     prepare_fn=prepare, shard=None if shard == "-" else parse_shard(shard))


if __name__ == "__main__":
    main(*sys.argv[1:3])
