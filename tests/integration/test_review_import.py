"""suprem_review import: revised labels replace the AI's, versioned, annotated, reported; stale
preprocessed copies removed; bad input (geometry, unknown case, class, non-binary mask) refused in
one line with nothing overwritten."""
from __future__ import annotations

import json

import numpy as np
import pytest

from suprem_nnunet.dataset.raw import write_annotated_classes, write_dataset_json, write_image
from suprem_nnunet.review.revisions import import_revisions

NAMES = ["liver", "spleen", "kidney_left"]
SHAPE = (6, 8, 10)
GEO = ((2.0, 2.0, 3.0), (1.0, 2.0, 3.0), np.eye(3))


@pytest.fixture
def dataset(nnunet_env):
    raw = nnunet_env / "nnUNet_raw" / "Dataset050_Rev"
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).mkdir(parents=True)
    ai = np.zeros(SHAPE, np.uint8)
    ai[1:4, 1:5, 1:5] = 1  # liver
    ai[1:3, 5:7, 6:9] = 2  # spleen
    for case in ("a", "b"):
        write_image(raw / "imagesTr" / f"{case}_0000.nii.gz", np.zeros(SHAPE, np.int16), *GEO)
        write_image(raw / "labelsTr" / f"{case}.nii.gz", ai, *GEO)
    write_dataset_json(raw, NAMES, 2)
    write_annotated_classes(raw, {"a": [], "b": ["liver"]})
    pre = nnunet_env / "nnUNet_preprocessed" / "Dataset050_Rev"
    (pre / "plans_3d_fullres").mkdir(parents=True)
    for case in ("a", "b"):
        for name in (f"{case}.pkl", f"{case}.b2nd", f"{case}_seg.b2nd"):
            (pre / "plans_3d_fullres" / name).write_bytes(b"x")
    (pre / "dataset.json").write_text((raw / "dataset.json").read_text())
    return raw, pre, ai


def _label(path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_whole_map_and_mask_revisions_versioned_annotated_reported(dataset, tmp_path):
    raw, pre, ai = dataset
    rev = tmp_path / "rev1"
    rev.mkdir()
    new = ai.copy()
    new[1:4, 1:5, 1:3] = 0  # liver shrinks by 24 voxels
    new[4, 6, 6:9] = 3  # a kidney_left the AI missed: 3 voxels
    write_image(rev / "a.nii.gz", new, *GEO)
    (rev / "a.json").write_text(json.dumps({"reviewer": "dr. who", "date": "2024-05-01", "classes": ["liver", "kidney_l"]}))
    report = import_revisions(rev, 50)
    lab = _label(raw / "labelsTr" / "a.nii.gz")
    assert (lab == new).all()  # spleen not revised but identical anyway
    assert (_label(raw / "revisions" / "a" / "v001.nii.gz") == ai).all()
    e = report["cases"][0]
    assert e["reviewer"] == "dr. who" and e["date"] == "2024-05-01" and e["classes"] == ["liver", "kidney_left"]
    assert e["changes"]["liver"] == {"added": 0, "removed": 24} and e["changes"]["kidney_left"] == {"added": 3, "removed": 0}
    ann = json.loads((raw / "annotated_classes.json").read_text())
    assert ann == {"a": ["kidney_left", "liver"], "b": ["liver"]}
    assert json.loads((pre / "annotated_classes.json").read_text()) == ann  # training reads this copy
    assert sorted(p.name for p in (pre / "plans_3d_fullres").iterdir()) == ["b.b2nd", "b.pkl", "b_seg.b2nd"]
    assert len(json.loads((raw / "revisions" / "history.json").read_text())) == 1
    assert list((raw / "revisions").glob("report_*.txt"))

    # a single-class mask for case a: only spleen changes; the second revision is v002
    rev2 = tmp_path / "rev2"
    (rev2 / "a").mkdir(parents=True)
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:3, 5:7, 5:9] = 1  # spleen grows by one column (4 voxels)
    write_image(rev2 / "a" / "spleen.nii.gz", mask, *GEO)
    r2 = import_revisions(rev2, "Rev", reviewer="me")
    lab2 = _label(raw / "labelsTr" / "a.nii.gz")
    assert ((lab2 == 2) == mask.astype(bool)).all() and ((lab2 == 1) == (new == 1)).all() and (lab2 == 3).sum() == 3
    assert r2["cases"][0]["version"] == 2 and r2["cases"][0]["reviewer"] == "me"
    assert r2["cases"][0]["changes"]["spleen"] == {"added": 4, "removed": 0}
    assert (_label(raw / "revisions" / "a" / "v002.nii.gz") == new).all()
    assert json.loads((raw / "annotated_classes.json").read_text())["a"] == ["kidney_left", "liver", "spleen"]


def _snapshot(raw):
    return {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()}


@pytest.mark.parametrize("problem, message", [
    ("geometry", r"b\.nii\.gz: spacing \(2\.0, 2\.0, 2\.0\) differs from its CT .*b_0000\.nii\.gz"),
    ("unknown_case", r"zz\.nii\.gz: case 'zz' is not in Dataset050_Rev"),
    ("unknown_class", r"pancreas\.nii\.gz: class 'pancreas' is not a label of the dataset"),
    ("not_binary", r"liver\.nii\.gz: a single-class mask must hold only 0 and 1"),
    ("bad_id", r"b\.nii\.gz: label id\(s\) \[7\] are not labels of Dataset050_Rev"),
    ("unknown_case_masks", r"rev/zz: case 'zz' is not in Dataset050_Rev"),
    ("geometry_mask", r"liver\.nii\.gz: size \(10, 8, 5\) differs from its CT .*b_0000\.nii\.gz"),
])
def test_bad_revision_one_line_nothing_written(dataset, tmp_path, capsys, problem, message):
    from suprem_nnunet.cli.review import main

    raw, pre, ai = dataset
    rev = tmp_path / "rev"
    rev.mkdir()
    write_image(rev / "a.nii.gz", ai, *GEO)  # a good revision comes first: it must not be written either
    if problem == "geometry":
        write_image(rev / "b.nii.gz", ai, (2.0, 2.0, 2.0), GEO[1], GEO[2])
    elif problem == "unknown_case":
        write_image(rev / "zz.nii.gz", ai, *GEO)
    elif problem == "unknown_case_masks":
        (rev / "zz").mkdir()
        write_image(rev / "zz" / "liver.nii.gz", (ai == 1).astype(np.uint8), *GEO)
    elif problem == "geometry_mask":
        (rev / "b").mkdir()
        write_image(rev / "b" / "liver.nii.gz", (ai[:5] == 1).astype(np.uint8), *GEO)
    elif problem == "bad_id":
        bad = ai.copy()
        bad[0, 0, 0] = 7
        write_image(rev / "b.nii.gz", bad, *GEO)
    else:
        (rev / "b").mkdir()
        name = "pancreas" if problem == "unknown_class" else "liver"
        write_image(rev / "b" / f"{name}.nii.gz", (ai * (2 if problem == "not_binary" else 1)).astype(np.uint8), *GEO)
    before = _snapshot(raw)
    pre_before = sorted(p.name for p in (pre / "plans_3d_fullres").iterdir())
    with pytest.raises(ValueError, match=message):
        import_revisions(rev, 50)
    assert _snapshot(raw) == before and not (raw / "revisions").exists()
    assert sorted(p.name for p in (pre / "plans_3d_fullres").iterdir()) == pre_before
    rc = main(["import", str(rev), "-d", "50"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("suprem_review: error:")
    assert _snapshot(raw) == before


def test_class_names_are_checked_by_one_function_for_revisions_and_annotated_classes(dataset, tmp_path):
    """A revision sidecar and annotated_classes.json name classes; both are checked by
    dataset.raw.dataset_classes (synonyms accepted, one line naming the file otherwise)."""
    from suprem_nnunet.dataset.raw import dataset_classes, read_annotated_classes

    raw, _, ai = dataset
    assert dataset_classes(["kidney_l", "Liver"], NAMES, "x") == ["kidney_left", "liver"]
    (raw / "annotated_classes.json").write_text(json.dumps({"a": ["pancreas"], "b": []}))
    with pytest.raises(ValueError, match=r"annotated_classes\.json: case a: class 'pancreas' is not a label of "
                                         r"the dataset\.json \(liver, spleen, kidney_left\)"):
        read_annotated_classes(raw, NAMES)
    rev = tmp_path / "rev"
    rev.mkdir()
    write_image(rev / "a.nii.gz", ai, *GEO)
    (rev / "a.json").write_text(json.dumps({"classes": ["pancreas"]}))
    with pytest.raises(ValueError, match=r"a\.json: class 'pancreas' is not a label of the dataset\.json "
                                         r"\(liver, spleen, kidney_left\)"):
        import_revisions(rev, 50)
