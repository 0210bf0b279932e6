"""Where data lives. nnunetv2 reads its three folders from env vars when it is imported, so every
entry point calls `setup_environment()` before importing nnunetv2."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def setup_environment(root: Optional[str] = None) -> None:
    """Fill unset nnU-Net folder variables from `root`, $SUPREM_HOME or ./suprem_data.

    Also sets CPU-friendly defaults (no torch.compile, a small worker pool) when unset.
    """
    base = Path(root or os.environ.get("SUPREM_HOME") or "suprem_data").absolute()
    for var in _FOLDERS:
        if root is not None or not os.environ.get(var):
            os.environ[var] = str(base / var)
        Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("nnUNet_def_n_proc", str(min(os.cpu_count() or 1, 8)))


def raw_root() -> Path:
    return _get("nnUNet_raw")


def preprocessed_root() -> Path:
    return _get("nnUNet_preprocessed")


def results_root() -> Path:
    return _get("nnUNet_results")


def _get(var: str) -> Path:
    value = os.environ.get(var)
    if not value:
        setup_environment()
        value = os.environ[var]
    return Path(value)
