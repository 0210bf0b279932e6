"""One seed for everything random in a run: Python, NumPy, torch (CPU and every CUDA device), and
the seeds of nnU-Net's augmentation workers.

On CPU the project runs nnU-Net's data loader in the main process (`nnUNet_n_proc_DA=0`), so
`seed_everything(seed)` before building the trainer makes a run bit-reproducible. On CUDA nnU-Net
starts its augmentation workers with `seeds=None` (each worker draws from the OS); the trainer
passes `worker_seeds(seed, rank, n)` instead, so every worker of every DDP rank has its own,
reproducible stream. Bit-identical GPU runs also need `deterministic=True` (cuDNN's deterministic
kernels and `torch.use_deterministic_algorithms(True, warn_only=True)`), which costs speed; kernels
without a deterministic version (e.g. some 3D transposed-convolution backward passes, atomic adds in
index operations) warn and stay non-deterministic.
"""
from __future__ import annotations

import logging
import os
import random
from typing import List, Optional

import numpy as np
from .errors import InputError

log = logging.getLogger(__name__)

#: largest seed NumPy's legacy global generator accepts
MAX_SEED = 2**32 - 1


def check_seed(value) -> int:
    """`value` as a seed (an integer in [0, 2**32 - 1]); ValueError naming the value otherwise."""
    if isinstance(value, bool):
        raise InputError(f"--seed must be an integer between 0 and {MAX_SEED}, got {value!r}")
    try:
        seed = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InputError(f"--seed must be an integer between 0 and {MAX_SEED}, got {value!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be an integer between 0 and {MAX_SEED}, got {seed}")
    return seed


def seed_everything(seed: int, deterministic: bool = False) -> dict:
    """Seed Python's `random`, NumPy's global generator and torch (CPU and all CUDA devices).
    `deterministic`: cuDNN deterministic kernels, no cuDNN benchmarking, and
    `torch.use_deterministic_algorithms(True, warn_only=True)` (CUBLAS_WORKSPACE_CONFIG set when
    unset, as CUDA requires). Returns what was set, for run_info.json."""
    import torch

    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    info = {"seed": seed, "deterministic": bool(deterministic)}
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
        info["cublas_workspace_config"] = os.environ["CUBLAS_WORKSPACE_CONFIG"]
    return info


def worker_seeds(seed: Optional[int], rank: int, num_workers: int, stream: int = 0) -> Optional[List[int]]:
    """Distinct, reproducible seeds for the `num_workers` augmentation workers of DDP rank `rank`
    and loader `stream` (0 training, 1 validation); None when the run is unseeded (nnU-Net's own
    behaviour)."""
    if seed is None or num_workers <= 0:
        return None
    ss = np.random.SeedSequence([check_seed(seed), int(rank), int(stream)])
    return [int(s) for s in ss.generate_state(num_workers)]


def rank_seed(seed: int, rank: int) -> int:
    """The seed of DDP rank `rank`'s main-process generators (each rank draws other patches)."""
    return int(np.random.SeedSequence([check_seed(seed), int(rank)]).generate_state(1)[0])
