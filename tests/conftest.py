"""Shared fixtures and markers for every test layer.

Layers: unit/ (pure data, tiny arrays and networks), integration/ (several modules together, files on
disk, small networks), e2e/ (command-line tools in subprocesses, training runs, the whole pipeline).
Every test under e2e/ is marked `e2e`; a test marked `gpu` is skipped when no CUDA device is
present. Markers and test paths are declared in pytest.ini; helpers live in the `helpers` package.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, List

import pytest
import torch

os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("nnUNet_compile", "f")

E2E_DIR = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """Mark every test in e2e/ `e2e`; skip the `gpu` tests when torch sees no CUDA device."""
    no_cuda = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if E2E_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
            item.add_marker(no_cuda)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks on two cores: intra-op threading costs more than it gains (and thrashes when
    another process shares the cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def nnunet_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """nnUNet_raw / _preprocessed / _results under a temporary folder for this test."""
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        d = tmp_path / var
        d.mkdir()
        monkeypatch.setenv(var, str(d))
    return tmp_path
