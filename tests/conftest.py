"""Shared fixtures: real-data location and an isolated nnU-Net folder tree per test session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"

os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("nnUNet_compile", "f")


def real_data(*parts: str) -> Path:
    """Path under ../shared/data/real, or skip the test with a clear message when it is absent."""
    p = REAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test data not found at {p} (the shared/data/real folder is absent)")
    return p


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks on two cores: intra-op threading costs more than it gains (and thrashes when
    another process shares the cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch):
    """nnUNet_raw / _preprocessed / _results under a temporary folder for this test."""
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        d = tmp_path / var
        d.mkdir()
        monkeypatch.setenv(var, str(d))
    return tmp_path


def run_cli(module: str, *args: str, env: dict, check: bool = True):
    """Run `python -m suprem_nnunet.cli.<module> args` in a subprocess; returns CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **{k: str(v) for k, v in env.items()}}
    proc = subprocess.run([sys.executable, "-m", f"suprem_nnunet.cli.{module}", *map(str, args)],
                          capture_output=True, text=True, env=full_env, cwd=str(ROOT), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
