"""Conversion runs: bad input, --skip-bad, resume with identical output, workers, CLI, merge."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.conversion_replicas import phantom, read_dataset, sitk_image, source_label, write
from suprem_nnunet.cli import convert as cli
from dataset_conversion.errors import BadInputError
from dataset_conversion.registry import SOURCES
from dataset_conversion.runner import convert

LITS = {1: "liver", 2: "liver_tumor"}


def lits_replica(root, n=2, seed=100):
    phs = {}
    for i in range(n):
        ph = phs[i] = phantom(seed + i, "RAS")
        write(root / f"volume-{i}.nii.gz", ph.image, ph)
        write(root / f"segmentation-{i}.nii.gz", source_label(ph, LITS), ph)
    return phs


def tree_digest(folder):
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def go(tmp_path, src="lits", did=1, **kw):
    kw.setdefault("progress", False)
    return convert(src, tmp_path / "in", did, "T", raw_root=tmp_path / "raw", **kw)


@pytest.mark.parametrize("problem,match", [
    ("no_image", r"segmentation-1.nii.gz: label has no matching image"),
    ("no_label", r"volume-1.nii.gz: image has no matching label"),
    ("geometry", r"segmentation-1.nii.gz: geometry does not match image volume-1.nii.gz: spacing"),
    ("values", r"segmentation-1.nii.gz: label values \[7\] are not defined by the source"),
    ("corrupt", r"volume-1.nii.gz: unreadable or corrupt file"),
])
def test_bad_input_one_line_and_skip(tmp_path, problem, match):
    phs = lits_replica(tmp_path / "in")
    img, seg = tmp_path / "in/volume-1.nii.gz", tmp_path / "in/segmentation-1.nii.gz"
    if problem == "no_image":
        img.unlink()
    elif problem == "no_label":
        seg.unlink()
    elif problem == "geometry":
        ph = phs[1]
        lab = sitk_image(source_label(ph, LITS), ph)
        lab.SetSpacing([s * 1.5 for s in ph.spacing])
        sitk.WriteImage(lab, str(seg))
    elif problem == "values":
        arr = source_label(phs[1], LITS)
        arr[0, 0, 0] = 7
        write(seg, arr, phs[1])
    elif problem == "corrupt":
        img.write_bytes(img.read_bytes()[:300])
    with pytest.raises(BadInputError, match=match) as e:
        go(tmp_path)
    assert "\n" not in str(e.value)
    rep = go(tmp_path, did=2, skip_bad=True)
    folder = tmp_path / "raw/Dataset002_T"
    assert [c["case"] for c in rep.cases] == ["lits_0"]
    assert [s["case"] for s in rep.skipped] == ["lits_1"] and rep.skipped[0]["reason"]
    assert sorted(os.listdir(folder / "labelsTr")) == ["lits_0.nii.gz"]  # nothing half-written
    assert sorted(os.listdir(folder / "imagesTr")) == ["lits_0_0000.nii.gz"]
    report = json.loads((folder / "conversion_report.json").read_text())
    assert report["counts"] == {"written": 1, "labelled": 1, "excluded": 0, "skipped": 1}
    assert "skipped lits_1" in (folder / "conversion_report.txt").read_text()


def test_rerun_resumes_and_output_is_identical(tmp_path):
    lits_replica(tmp_path / "in", n=3)
    go(tmp_path)
    folder = tmp_path / "raw/Dataset001_T"
    first = tree_digest(folder)
    # an interrupted run: one case lost its record and its label, the staging area holds junk
    (folder / ".suprem_conversion/cases/lits_1.json").unlink()
    (folder / "labelsTr/lits_1.nii.gz").unlink()
    (folder / ".suprem_conversion/staging/123-lits_2.nii.gz").write_bytes(b"partial")
    mtime = (folder / "labelsTr/lits_0.nii.gz").stat().st_mtime_ns
    go(tmp_path)
    assert tree_digest(folder) == first
    assert (folder / "labelsTr/lits_0.nii.gz").stat().st_mtime_ns == mtime  # done cases are not redone


def test_parallel_workers_match_serial(tmp_path):
    lits_replica(tmp_path / "in", n=3)
    go(tmp_path, did=1)
    go(tmp_path, did=2, num_workers=2)
    a, b = tree_digest(tmp_path / "raw/Dataset001_T"), tree_digest(tmp_path / "raw/Dataset002_T")
    strip = lambda d: {k: v for k, v in d.items() if "state.json" not in k and "report" not in k
                       and "dataset.json" not in k}
    assert strip(a) == strip(b)


def test_cli_list_convert_and_merge(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for key in SOURCES:
        assert f"\n{key}  " in "\n" + out
    assert "kidney_cyst" in out and "rib_left_1" in out
    # LiTS volumes 0, 1 and MSD Task03 liver_0 (the same scan as LiTS volume-0) and liver_5
    phs = lits_replica(tmp_path / "lits")
    msd = tmp_path / "Task03_Liver"
    for i, ph in ((0, phs[0]), (5, phantom(150, "RAS"))):
        write(msd / f"imagesTr/liver_{i}.nii.gz", ph.image, ph)
        write(msd / f"labelsTr/liver_{i}.nii.gz", source_label(ph, LITS), ph)
    hv = tmp_path / "Task08_HepaticVessel"
    ph = phantom(160, "RAS")
    write(hv / "imagesTr/hepaticvessel_1.nii.gz", ph.image, ph)
    write(hv / "labelsTr/hepaticvessel_1.nii.gz", source_label(ph, {1: "hepatic_vessel", 2: "hepatic_vessel_tumor"}), ph)
    assert cli.main(["lits", str(tmp_path / "lits"), "-d", "11", "--no-progress"]) == 0
    assert cli.main(["msd_task03", str(msd), "-d", "12", "-np", "2", "--no-progress"]) == 0
    assert cli.main(["msd_task08", str(hv), "-d", "13", "--name", "HV", "--no-progress"]) == 0
    assert "Dataset013_HV from msd_task08: 1 cases written" in capsys.readouterr().out
    assert cli.main(["lits", str(tmp_path / "nope"), "-d", "14"]) == 1
    assert "nope: input folder not found" in capsys.readouterr().err
    assert cli.main(["merge", "11", "12", "HV", "-d", "20", "--name", "Pretrain", "--no-progress"]) == 0
    folder = tmp_path / "raw/Dataset020_Pretrain"
    dj, ann = read_dataset(folder)
    assert list(dj["labels"]) == ["background", "liver", "hepatic_vessel", "liver_tumor", "hepatic_vessel_tumor"]
    assert sorted(dj["case_sources"]) == ["lits_0", "lits_1", "msd03_5", "msd08_1"]
    assert dj["case_sources"]["msd03_5"]["source"] == "msd_task03"
    assert dj["tumor_hosts"] == {"liver_tumor": "liver", "hepatic_vessel_tumor": "liver"}
    assert dj["tumor_host_classes"]["hepatic_vessel_tumor"] == ["liver"]
    rep = json.loads((folder / "conversion_report.json").read_text())
    assert [(e["case"], e["reason"][:24]) for e in rep["excluded"]] == [("msd03_0", "same scan as LiTS volume")]
    assert ann["msd08_1"] == ["hepatic_vessel", "hepatic_vessel_tumor"]
    # labels renumbered into the union list
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr/msd08_1.nii.gz")))
    src = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "raw/Dataset013_HV/labelsTr/msd08_1.nii.gz")))
    assert np.array_equal(lab == dj["labels"]["hepatic_vessel_tumor"], src == 2)
    assert np.array_equal(lab == dj["labels"]["hepatic_vessel"], src == 1)
