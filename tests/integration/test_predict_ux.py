"""suprem_predict as a product: every output flag, DICOM series input, and bad inputs (one line, no
partial output), on a small phantom with a deterministic tiny model (IntensityBandNet, no training)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.paths import real_data
from suprem_nnunet.cli import predict as predict_cli
from suprem_nnunet.inference.outputs import read_probabilities
from suprem_nnunet.inference.predict import predict
from suprem_nnunet.benchmarks.reference_nets import band_model, band_phantom

NAMES = ["liver", "spleen", "gall_bladder"]
SPACING = (1.6, 1.4, 2.5)  # x, y, z


@pytest.fixture(scope="module")
def case(tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("predict_ux")
    hu, _ = band_phantom((24, 40, 44), len(NAMES) + 1, seed=1)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(SPACING)
    img.SetOrigin((-30.0, 12.0, 100.0))
    sitk.WriteImage(img, str(root / "ct.nii.gz"))
    model = band_model(NAMES, root / "model", spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16))
    return root, model


def _only_final_files(folder):
    assert not [p for p in folder.rglob("*") if p.name.startswith(".tmp")], "temporary files left behind"


def test_every_output_flag(case, tmp_path):
    root, model = case
    out = tmp_path / "out"
    [f] = predict(root / "ct.nii.gz", out, model, per_class=True, statistics=True, preview=True,
                  save_probabilities=True, roi_subset=["liver", "gallbladder"])  # a synonym of gall_bladder
    seg_img, img = sitk.ReadImage(str(f)), sitk.ReadImage(str(root / "ct.nii.gz"))
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(seg_img, get)(), getattr(img, get)()), get
    seg, hu = sitk.GetArrayFromImage(seg_img), sitk.GetArrayFromImage(img)
    assert set(np.unique(seg)) == {0, 1, 3}  # spleen (2) left out by --roi-subset
    assert json.loads((out / "classes.json").read_text()) == {"background": 0, "liver": 1, "gall_bladder": 3}
    assert (out / "classes.csv").read_text().splitlines() == ["id,name", "0,background", "1,liver", "3,gall_bladder"]
    assert sorted(p.name for p in (out / "ct").iterdir()) == ["gall_bladder.nii.gz", "liver.nii.gz"]
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "ct" / "liver.nii.gz")))
    assert np.array_equal(liver == 1, seg == 1)
    stats = json.loads((out / "ct_statistics.json").read_text())
    n = int((seg == 1).sum())
    assert stats["liver"]["voxels"] == n > 0
    assert stats["liver"]["volume_ml"] == pytest.approx(n * np.prod(SPACING) / 1000, rel=1e-3)
    assert stats["liver"]["mean_hu"] == pytest.approx(hu[seg == 1].mean(), abs=1e-2)
    assert stats["liver"]["sd_hu"] == pytest.approx(hu[seg == 1].std(), abs=1e-2)
    assert (out / "ct_statistics.csv").read_text().splitlines()[0] == "class,id,voxels,volume_ml,mean_hu,sd_hu"
    png = (out / "ct_preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # probabilities: float16 softmax on the network grid; the stored geometry puts them back on the input
    p = read_probabilities(out / "ct.npz")
    assert p["probabilities"].dtype == np.float16 and list(p["class_names"]) == ["background", *NAMES]
    assert np.allclose(p["probabilities"].astype(np.float32).sum(0), 1, atol=1e-2)
    def centroid(weights, spacing, origin, direction):  # physical centre (mm) of a (z, y, x) weight array
        idx = (np.argwhere(weights > 0)[:, ::-1] * weights[weights > 0][:, None]).sum(0) / weights.sum()
        return np.asarray(origin) + np.asarray(direction).reshape(3, 3) @ (np.asarray(spacing) * idx)

    for k in (1, 3):
        got = centroid(p["probabilities"][k].astype(np.float64) * (p["probabilities"][k] > 0.5), p["spacing"],
                       p["origin"], p["direction"])
        want = centroid((seg == k).astype(np.float64), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
        assert np.abs(got - want).max() < max(SPACING), (k, got, want)  # within a voxel (exact: test_predict_fast_path)
    _only_final_files(out)


def test_fast_is_close_to_the_full_path_and_keeps_the_geometry(case, tmp_path):
    root, model = case
    [full] = predict(root / "ct.nii.gz", tmp_path / "full", model)
    [fast] = predict(root / "ct.nii.gz", tmp_path / "fast", model, fast=True)
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(f))) for f in (full, fast))
    assert a.shape == b.shape
    for k in range(1, len(NAMES) + 1):
        assert 2 * ((a == k) & (b == k)).sum() / ((a == k).sum() + (b == k).sum()) > 0.6, k  # coarse: labels at 2 mm


def test_dicom_series_folder(case, tmp_path):
    _, model = case
    src = real_data("dcmqi_ct3slice", "dicom")
    [f] = predict(src, tmp_path / "out", model)
    assert f.name == "dicom.nii.gz"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(src)))
    ref = reader.Execute()
    out = sitk.ReadImage(str(f))
    assert out.GetSize() == ref.GetSize() == (512, 512, 3)
    assert np.allclose(out.GetOrigin(), ref.GetOrigin()) and np.allclose(out.GetSpacing(), ref.GetSpacing())
    _only_final_files(tmp_path / "out")


def _two_series(folder):
    import pydicom

    src = real_data("dcmqi_ct3slice", "dicom")
    folder.mkdir()
    uids = []
    for k in range(2):
        uid = pydicom.uid.generate_uid()
        uids.append(uid)
        for f in sorted(src.iterdir()):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.save_as(folder / f"s{k}_{f.name}")
    return uids


def test_two_dicom_series_need_a_series_uid(case, tmp_path, capsys):
    _, model = case
    uids = _two_series(tmp_path / "two")
    with pytest.raises(ValueError) as e:
        predict(tmp_path / "two", tmp_path / "out", model)
    msg = str(e.value)
    assert "\n" not in msg and "--series-uid" in msg and all(u in msg for u in uids)
    assert not list((tmp_path / "out").iterdir())
    [f] = predict(tmp_path / "two", tmp_path / "out", model, series_uid=uids[1])
    assert sitk.ReadImage(str(f)).GetSize() == (512, 512, 3)


def _write(path, arr, spacing=None):
    img = sitk.GetImageFromArray(arr)
    if spacing:
        img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


@pytest.mark.parametrize("bad", ["empty folder", "2D", "4D", "NaN", "ROI"])
def test_bad_input_is_one_line_and_leaves_no_output(case, tmp_path, bad):
    root, model = case
    inp, roi = tmp_path / "in", None
    inp.mkdir()
    if bad == "2D":
        _write(inp / "a.nii.gz", np.zeros((20, 20), np.int16))
    elif bad == "4D":
        _write(inp / "a.nii.gz", np.zeros((2, 8, 8, 8), np.int16))
    elif bad == "NaN":
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "ct.nii.gz"))).astype(np.float32)
        arr[5, 5, 5] = np.nan
        _write(inp / "a.nii.gz", arr, SPACING)
        shutil.copy(root / "ct.nii.gz", inp / "b.nii.gz")
    elif bad == "ROI":
        shutil.copy(root / "ct.nii.gz", inp / "a.nii.gz")
        roi = ["liver", "pancreatic_unicorn"]
    out = tmp_path / "out"
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        predict(inp, out, model, roi_subset=roi)
    msg = str(e.value)
    assert "\n" not in msg
    assert {"empty folder": "no image files", "2D": "2D", "4D": "4D", "NaN": "NaN",
            "ROI": "pancreatic_unicorn"}[bad] in msg
    if bad != "empty folder" and bad != "ROI":
        assert str(inp / "a.nii.gz") in msg
    assert not out.exists() or not [p for p in out.rglob("*") if p.suffix in (".gz", ".png", ".npz", ".csv")]
    _only_final_files(out) if out.exists() else None


def test_cli_reports_a_bad_roi_in_one_line(case, tmp_path, capsys, monkeypatch):
    root, model = case
    import torch

    torch.save({"network_weights": model.state_dict, "trainer_name": model.trainer_name,
                "init_args": {"plans": model.plans, "configuration": model.configuration,
                              "dataset_json": model.dataset_json},
                "inference_allowed_mirroring_axes": model.mirror_axes}, tmp_path / "m.pth")
    monkeypatch.setenv("SUPREM_ZOO", str(tmp_path / "zoo"))
    rc = predict_cli.main(["-i", str(root / "ct.nii.gz"), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "m.pth"),
                           "--device", "cpu", "--roi-subset", "liver,unicorn"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "unicorn" in err and "liver, spleen, gall_bladder" in err
    rc = predict_cli.main(["-i", str(root / "ct.nii.gz"), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "m.pth"),
                           "--device", "cpu", "--roi-subset", "spleen", "--statistics"])
    assert rc == 0 and (tmp_path / "o" / "ct_statistics.csv").read_text().splitlines()[1].startswith("spleen,2,")
