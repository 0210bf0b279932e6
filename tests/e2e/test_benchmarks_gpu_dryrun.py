"""The GPU acceptance run (`python -m suprem_nnunet.benchmarks gpu`): its CPU dry run end to end (every
part at tiny sizes, in a subprocess as a user would start it), and its refusals before any work: no
CUDA device, a missing package, a budget too small for a part."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from suprem_nnunet.benchmarks import gpu

from helpers.paths import ROOT


@pytest.fixture
def nnunet_vars(monkeypatch):
    """gpu.main points nnU-Net's folder variables at its --out folder: restore them after the test."""
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile", "nnUNet_n_proc_DA"):
        was = os.environ.get(var)
        monkeypatch.setenv(var, was or "")  # recorded: restored (or removed again) after the test
        if was is None:
            monkeypatch.delenv(var)


@pytest.mark.slow
def test_cpu_dry_run_every_part_ok(tmp_path):
    """One dry run (n = 1 run; sizes in gpu.DRY): every part reports ok and the JSON holds its figures."""
    out = tmp_path / "bench"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "nnUNet_def_n_proc": "2"}
    proc = subprocess.run([sys.executable, "-m", "suprem_nnunet.benchmarks", "gpu", "--device", "cpu", "--dry-run",
                           "--out", str(out), "--peak-tflops", "0.05"],  # a CPU has no listed peak: give one
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    parts = report["parts"]
    assert {k: v["status"] for k, v in parts.items()} == {k: "ok" for k in ("data", *gpu.PARTS)}
    for name in ("data", *gpu.PARTS):  # the table has a line per part
        assert any(line.startswith(f"{name} ") and " ok " in line for line in proc.stdout.splitlines())

    a = parts["trainers"]
    for t in ("nnUNetTrainer", "SupremPretrainer"):
        assert a[t]["iterations_per_s"] > 0 and 0 <= a[t]["data_wait_share"] < 1
        assert np.isfinite([a[t]["loss_first"], a[t]["loss_last"]]).all()
    assert a["nnUNetTrainer"]["network"] == a["SupremPretrainer"]["network"]  # same plans, same network
    assert a["ratio_ours_over_stock"] == pytest.approx(
        a["SupremPretrainer"]["iterations_per_s"] / a["nnUNetTrainer"]["iterations_per_s"], rel=0.01)

    b = parts["presets"]
    assert {b[n]["network"] for n in gpu.PRESET_BACKBONES} == {"SuPreMUNet3D", "SuPreMSegResNet", "SuPreMSwinUNETR"}
    assert b["peak_tflops"] == report["config"]["peak_tflops"] == 0.05
    for n in gpu.PRESET_BACKBONES:
        assert b[n]["output_channels"] == 33 and b[n]["iterations_per_s"] > 0 and b[n]["flops_per_iteration"] > 0
        mfu = b[n]["flops_per_iteration"] * b[n]["iterations_per_s"] / 0.05e12
        assert b[n]["mfu"] == pytest.approx(mfu, rel=0.03, abs=2e-4) and b[n]["mfu_excluding_data"] >= b[n]["mfu"]

    c = parts["predict"]
    assert c["device"] == "cpu" and c["mirroring"] is True and c["ours_s"] > 0 and c["nnunet_s"] > 0
    assert c["min_dsc"] >= 0.99 and c["classes_compared"] > 0  # same network and weights on both sides

    d = parts["finetune"]
    assert Path(d["head_mapping"]).is_file() and np.isfinite(d["train_loss"] + d["val_loss"]).all()
    assert d["patch_size"] == [16, 16, 16]  # --max-patch 16 over the preset's 96^3

    e = parts["torchrun"]
    first, second = e["runs"]
    assert (first["backend"], first["world_size"], first["ddp_wrapped"]) == ("gloo", 1, True)
    assert (second["resumed_from"], second["resumed_epoch"], second["current_epoch"]) == ("checkpoint_final.pth", 1, 2)
    assert second["train_losses"][0] == first["train_losses"][0]  # the resumed run kept the first epoch's log
    assert not list(out.rglob(".tmp-*"))  # no half-written checkpoint or JSON left


def test_cuda_without_device_is_one_line_before_any_work(tmp_path, monkeypatch, capsys, nnunet_vars):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "bench"
    assert gpu.main(["--device", "cuda", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA device" in err and "--device cpu --dry-run" in err
    assert not out.exists()


def test_missing_package_is_named_before_any_work(tmp_path, capsys, nnunet_vars):
    out = tmp_path / "bench"
    assert gpu.main(["--device", "cpu", "--dry-run", "--out", str(out), "--require", "suprem_no_such_pkg"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing Python package(s): suprem_no_such_pkg;" in err and "docs/gpu.md" in err
    assert not out.exists()
    with pytest.raises(ValueError, match=r"missing Python package\(s\): suprem_no_such_a, suprem_no_such_b;"):
        gpu.check_packages(["numpy", "suprem_no_such_a", "suprem_no_such_b"])
    gpu.check_packages(gpu.REQUIRED_PACKAGES, gpu.ENTRY_MODULES)  # all installed here


def test_missing_dependency_of_a_package_is_named(tmp_path, monkeypatch):
    """A package that imports but needs another that is absent (as nnU-Net's trainer needs cc3d
    through acvl_utils): the absent one is named, with the module that needs it."""
    (tmp_path / "suprem_fake_entry.py").write_text("import suprem_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"suprem_absent_dependency \(imported by suprem_fake_entry\)"):
        gpu.check_packages(["numpy"], ["suprem_fake_entry"])


def test_part_over_budget_is_skipped(tmp_path, capsys, nnunet_vars):
    """--budget-s below a part's estimate: the part is skipped (reported, not failed); parts that need no
    phantom dataset do not make one."""
    out = tmp_path / "bench"
    assert gpu.main(["--device", "cpu", "--dry-run", "--out", str(out), "--parts", "predict",
                     "--budget-s", str(gpu.DRY.estimate_s["predict"] / 2)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert list(report["parts"]) == ["predict"] and report["parts"]["predict"]["status"] == "skipped"
    assert "--budget-s" in report["parts"]["predict"]["reason"]
    assert "predict   skipped" in capsys.readouterr().out


def test_peak_by_device_name():
    assert gpu.peak_tflops("NVIDIA H200") == gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0 and gpu.peak_tflops("NVIDIA H200 NVL") == 835.0
    assert gpu.peak_tflops("NVIDIA A100-SXM4-80GB") is None


def test_preset_batches_are_patches_with_atlas_ids():
    phantoms = gpu.make_phantoms(1, 24, 12.0, seed=0)
    img, lab = phantoms[0]
    assert img.shape == lab.shape == (24, 24, 24) and 0 <= img.min() and img.max() <= 1
    assert set(np.unique(lab)) - {0} <= set(range(1, 33)) and lab.max() > 0
    x, y = gpu.random_batch(phantoms, 3, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (3, 1, 16, 16, 16) and x.dtype == np.float32 and y.dtype == np.int64


def test_dispatcher_names_and_unknown_name(capsys):
    from suprem_nnunet.benchmarks.__main__ import BENCHMARKS, main

    assert "gpu" in BENCHMARKS
    assert main(["no-such-benchmark"]) == 2
    assert "unknown benchmark 'no-such-benchmark'" in capsys.readouterr().err
