"""Preprocessing completion marker + raw manifest (issue 12 item 2, issue 13): revisions imported with
`suprem_review import`, or a label edited in place, reach training without a manual re-preprocess
(`suprem_train` and `suprem_finetune` redo just the changed cases), and a preprocessed folder
without its marker (a killed run) is never used as complete."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from suprem_nnunet.dataset.raw import write_annotated_classes, write_image
from suprem_nnunet.preprocessing.manifest import marker_path

pytestmark = pytest.mark.slow

DS = "Dataset071_Manifest"
CLASSES = ["liver", "spleen", "kidney_left"]
SPLEEN = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three tiny phantoms (case manifest_000 does not annotate the spleen), planned and preprocessed."""
    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess
    from suprem_nnunet.synth.dataset import make_phantom_dataset

    root = tmp_path_factory.mktemp("manifest")
    old = {v: os.environ.get(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for v in old:
        (root / v).mkdir()
        os.environ[v] = str(root / v)
    raw = make_phantom_dataset(71, "Manifest", CLASSES, num_train=3, num_test=0, shape=(24, 24, 24),
                               spacing=(8.0, 8.0, 8.0), seed=5, progress=False)
    write_annotated_classes(raw, {"manifest_000": ["liver", "kidney_left"], "manifest_001": CLASSES,
                                  "manifest_002": CLASSES})
    plans = plan_and_preprocess(DS, "nnunet", ("3d_fullres",), PlanningCaps((16, 16, 16), 4, 16, 2), num_processes=1,
                                verify=False)
    pre = root / "nnUNet_preprocessed" / DS
    yield {"root": root, "raw": raw, "pre": pre, "plans": plans,
           "data": pre / plans["configurations"]["3d_fullres"]["data_identifier"]}
    for v, val in old.items():
        if val is None:
            os.environ.pop(v, None)
        else:
            os.environ[v] = val


def _seg(data: Path, case: str) -> np.ndarray:
    import blosc2

    return np.asarray(blosc2.open(str(data / f"{case}_seg.b2nd"), mode="r")[:])


def _label(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _suprem_train(monkeypatch) -> None:
    """`suprem_train` up to the point where training starts (the trainer itself is not run)."""
    import suprem_nnunet.training.pretrain as pretrain_mod
    from suprem_nnunet.cli.train import main

    class Stub:
        def configure_partial_labels(self, *a):
            pass

    monkeypatch.setattr(pretrain_mod, "build_trainer", lambda *a, **k: Stub())
    monkeypatch.setattr(pretrain_mod, "train", lambda *a, **k: Path("."))
    assert main(["71", "3d_fullres", "--device", "cpu"]) == 0


def test_preprocessing_writes_the_marker_with_the_raw_manifest(world):
    m = json.loads(marker_path(world["data"]).read_text())
    assert sorted(m["cases"]) == ["manifest_000", "manifest_001", "manifest_002"]
    lab = world["raw"] / "labelsTr" / "manifest_001.nii.gz"
    assert m["cases"]["manifest_001"]["label"] == [lab.name, lab.stat().st_size, lab.stat().st_mtime_ns]
    assert m["annotated_classes_sha256"] and m["plans_sha256"]
    assert not list(world["pre"].rglob(".tmp-*"))  # gt_segmentations copied through temporary names
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    infer_dataset_class(str(world["data"]))  # the data folder holds nnU-Net's case files only


def test_imported_revision_reaches_suprem_train(world, tmp_path, monkeypatch, caplog):
    """`suprem_review import` removes the case's preprocessed files; `suprem_train` preprocesses that
    case again, so the revised label reaches training (rather than training on without it)."""
    from suprem_nnunet.review.revisions import import_revisions

    data, raw = world["data"], world["raw"]
    case = "manifest_000"
    before = _seg(data, case)
    others = {c: (data / f"{c}_seg.b2nd").stat().st_mtime_ns for c in ("manifest_001", "manifest_002")}
    mask = np.zeros_like(_label(raw / "labelsTr" / f"{case}.nii.gz"), np.uint8)
    mask[4:10, 5:11, 6:12] = 1  # the reviewer draws a 216-voxel spleen the AI labelled differently
    rev = tmp_path / "rev" / case
    rev.mkdir(parents=True)
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
    write_image(rev / "spleen.nii.gz", mask, ct.GetSpacing(), ct.GetOrigin(), np.reshape(ct.GetDirection(), (3, 3)))
    import_revisions(tmp_path / "rev", 71)
    with caplog.at_level(logging.INFO, logger="suprem_nnunet.preprocessing.run"):
        _suprem_train(monkeypatch)
    after = _seg(data, case)
    revised = _label(raw / "labelsTr" / f"{case}.nii.gz")
    assert not np.array_equal(after, before)
    assert int((after == SPLEEN).sum()) == int(mask.sum()) == int((revised == SPLEEN).sum()) == 216
    assert "spleen" in json.loads((world["pre"] / "annotated_classes.json").read_text())[case]
    assert any(case in r.getMessage() and "again" in r.getMessage() for r in caplog.records)
    # only the revised case was preprocessed again; the marker is back and up to date
    assert {c: (data / f"{c}_seg.b2nd").stat().st_mtime_ns for c in others} == others
    assert json.loads(marker_path(data).read_text())["cases"][case]["label"][2] == \
        (raw / "labelsTr" / f"{case}.nii.gz").stat().st_mtime_ns
    np.testing.assert_array_equal(_label(world["pre"] / "gt_segmentations" / f"{case}.nii.gz"), revised)


def test_preprocessing_killed_before_the_marker_is_redone(world, monkeypatch):
    """A folder without the marker (killed before the end: one case never written) is preprocessed
    again before training (rather than `suprem_train` training on the two cases that are there)."""
    data = world["data"]
    marker_path(data).unlink()
    for f in data.glob("manifest_002*"):
        f.unlink()
    _suprem_train(monkeypatch)
    assert sorted(p.name[:-4] for p in data.glob("*.pkl")) == ["manifest_000", "manifest_001", "manifest_002"]
    assert marker_path(data).is_file() and _seg(data, "manifest_002").max() > 0


def test_label_edited_in_place_reaches_suprem_finetune(world):
    """`suprem_finetune`'s target preparation: a label edited in place after a completed
    preprocessing is preprocessed again, and only that case (the plans are equal and every case has
    a readable .pkl, so only the manifest tells the label is stale)."""
    from suprem_nnunet.training.finetune import prepare_target

    plans = json.loads(json.dumps(world["plans"]))
    plans["plans_name"] = "ft_plans"
    plans["configurations"]["3d_fullres"]["data_identifier"] = "ft_plans_3d_fullres"
    data = world["pre"] / "ft_plans_3d_fullres"
    prepare_target(DS, plans, "3d_fullres", num_processes=1, verify=False)
    case = "manifest_001"
    lab_file = world["raw"] / "labelsTr" / f"{case}.nii.gz"
    import SimpleITK as sitk

    img = sitk.ReadImage(str(lab_file))
    lab = sitk.GetArrayFromImage(img)
    lab[lab == 3] = 0  # the kidney is erased by hand
    write_image(lab_file, lab, img.GetSpacing(), img.GetOrigin(), np.reshape(img.GetDirection(), (3, 3)))
    assert (_seg(data, case) == 3).any()
    other = (data / "manifest_002_seg.b2nd").stat().st_mtime_ns
    prepare_target(DS, plans, "3d_fullres", num_processes=1, verify=False)
    assert not (_seg(data, case) == 3).any() and (_seg(data, "manifest_002") == 3).any()
    # another checkpoint to start from is not a change of the data: nothing is preprocessed again
    plans["suprem"] = {**plans.get("suprem", {}), "pretrain": {"checkpoint": "another.pth"}}
    prepare_target(DS, plans, "3d_fullres", num_processes=1, verify=False)
    assert (data / "manifest_002_seg.b2nd").stat().st_mtime_ns == other
