"""The GPU check script (`python -m suprem_nnunet.benchmarks_gpu`): a CPU dry run of the same code,
and one clear line when no CUDA device is present."""
import json

import numpy as np

from suprem_nnunet.benchmarks_gpu import main, make_phantoms, random_batch


def test_cpu_dry_run_trains_and_reports(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "row.json"
    assert main(["--device", "cpu", "--iterations", "2", "--warmup", "0", "--patch", "16", "--batch-size", "1",
                 "--phantoms", "1", "--no-amp", "--json", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "iterations/s" in line and "data loading" in line
    row = json.loads(out.read_text())
    assert row["network"] == "SuPreMUNet3D" and row["output_channels"] == 33 and row["iterations"] == 2
    assert row["iterations_per_s"] > 0 and 0 <= row["data_loading_share"] < 1
    assert np.isfinite(row["loss_first"]) and np.isfinite(row["loss_last"])


def test_refuses_in_one_line_without_cuda(monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "row.json"
    assert main(["--iterations", "1", "--json", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA device" in err and "--device cpu" in err
    assert not out.exists()


def test_batches_are_patches_with_atlas_ids():
    phantoms = make_phantoms(1, 24, 12.0, seed=0)
    img, lab = phantoms[0]
    assert img.shape == lab.shape == (24, 24, 24) and 0 <= img.min() and img.max() <= 1
    assert set(np.unique(lab)) - {0} <= set(range(1, 33)) and lab.max() > 0
    x, y = random_batch(phantoms, 3, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (3, 1, 16, 16, 16) and x.dtype == np.float32 and y.dtype == np.int64
