"""suprem_predict --num-parts N --part-id K: two parts run as two concurrent processes into one output
folder give the same files, byte for byte, as one unsharded run; bad part arguments stop in one line
before anything is written. A deterministic tiny model (IntensityBandNet, no training) on 5 phantoms."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from helpers.paths import ROOT
from suprem_nnunet.inference.predict import select_part
from suprem_nnunet.benchmarks.reference_nets import band_model, band_phantom
from suprem_nnunet.sharding import check_part, take_part

pytestmark = pytest.mark.slow  # trains or starts several processes

NAMES = ["liver", "spleen"]
CASES = [f"case_{i}" for i in range(5)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard_predict")
    (root / "images").mkdir()
    for i, c in enumerate(CASES):
        hu, _ = band_phantom((12, 20, 22), len(NAMES) + 1, seed=i)
        img = sitk.GetImageFromArray(hu)
        img.SetSpacing((2.0, 2.0, 2.5))
        sitk.WriteImage(img, str(root / "images" / f"{c}.nii.gz"))
    m = band_model(NAMES, root / "model", spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16))
    torch.save({"network_weights": m.state_dict, "trainer_name": m.trainer_name,
                "init_args": {"plans": m.plans, "configuration": m.configuration, "dataset_json": m.dataset_json},
                "inference_allowed_mirroring_axes": m.mirror_axes}, root / "m.pth")
    return root


def _cmd(root: Path, out: Path, *extra: str):
    return [sys.executable, "-m", "suprem_nnunet.cli.predict", "-i", str(root / "images"), "-o", str(out),
            "-m", str(root / "m.pth"), "--device", "cpu", "--statistics", "--skip-bad", *extra]


def _env(root: Path) -> dict:
    return {**os.environ, "SUPREM_ZOO": str(root / "zoo"), "OMP_NUM_THREADS": "1", "nnUNet_n_proc_DA": "0",
            "PYTHONPATH": str(ROOT)}


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_parts_are_disjoint_cover_everything_and_follow_nnunet():
    parts = [take_part(reversed(CASES), 2, k) for k in range(2)]
    assert parts == [["case_0", "case_2", "case_4"], ["case_1", "case_3"]]  # sorted(cases)[k::n], as nnU-Net
    assert take_part(CASES, 7, 6) == [] and take_part(CASES, 1, 0) == CASES
    cases = {c: [f"{c}.nii.gz"] for c in CASES}
    assert list(select_part(cases, 2, 1)) == ["case_1", "case_3"] and select_part(cases, 1, 0) is cases


def test_two_parts_run_concurrently_equal_one_unsharded_run(setup, tmp_path):
    root = setup
    env = _env(root)
    procs = [subprocess.Popen(_cmd(root, tmp_path / "parts", "--num-parts", "2", "--part-id", str(k)), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    whole = subprocess.run(_cmd(root, tmp_path / "whole"), env=env, capture_output=True, text=True, timeout=300)
    outs = [p.communicate(timeout=300) for p in procs]
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    # each part printed its own cases only
    printed = [sorted(Path(line).name for line in o.splitlines() if line.endswith(".nii.gz")) for o, _ in outs]
    assert printed == [["case_0.nii.gz", "case_2.nii.gz", "case_4.nii.gz"], ["case_1.nii.gz", "case_3.nii.gz"]]
    a, b = _files(tmp_path / "whole"), _files(tmp_path / "parts")
    b_skipped = {k: v for k, v in b.items() if k.startswith("skipped.part")}
    assert sorted(b_skipped) == ["skipped.part0of2.json", "skipped.part1of2.json"]
    assert all(v.strip() == b"{}" for v in b_skipped.values()) and a.pop("skipped.json").strip() == b"{}"
    b = {k: v for k, v in b.items() if k not in b_skipped}
    assert sorted(a) == sorted(b) and len([k for k in a if k.endswith(".nii.gz")]) == len(CASES)
    assert [k for k in a if a[k] != b[k]] == []  # label maps, statistics, class tables: byte-identical


@pytest.mark.parametrize("args, message", [
    (["--num-parts", "2", "--part-id", "2"], "--part-id must be in 0..1"),
    (["--num-parts", "3", "--part-id", "5"], "--part-id must be in 0..2"),
    (["--part-id", "1"], "--part-id must be in 0..0"),
    (["--num-parts", "0"], "argument --num-parts: expected a positive integer, got '0'"),
    (["--num-parts", "2", "--part-id", "-1"], "argument --part-id: expected an integer >= 0, got '-1'"),
    (["--num-parts", "x"], "argument --num-parts: expected a positive integer, got 'x'"),
])
def test_bad_part_arguments_stop_in_one_line_and_write_nothing(setup, tmp_path, capsys, monkeypatch, args, message):
    from suprem_nnunet.cli import predict as predict_cli

    monkeypatch.setenv("SUPREM_ZOO", str(tmp_path / "zoo"))
    out = tmp_path / "o"
    try:
        rc = predict_cli.main(_cmd(setup, out, *args)[3:])
    except SystemExit as e:  # argparse
        rc = e.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert rc != 0 and len(err) == 1 and err[0].startswith("suprem_predict: error: ") and message in err[0], err
    assert not out.exists()


def test_check_part_names_the_arguments():
    with pytest.raises(ValueError, match=r"^--part-id must be in 0\.\.3 \(--num-parts 4"):
        check_part(4, 4)
    with pytest.raises(ValueError, match="^--num-parts must be a positive integer"):
        check_part(0, 0)
