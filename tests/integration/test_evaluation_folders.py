"""evaluate_folders on tiny label maps: case ids, class matching by name, partial labels, geometry."""
import json
import logging
import math

import numpy as np
import pytest

from suprem_nnunet.cli.evaluate import main as evaluate_cli
from suprem_nnunet.dataset.raw import write_annotated_classes, write_dataset_json, write_image
from suprem_nnunet.evaluation.compare import paired_comparison
from suprem_nnunet.evaluation.evaluate import evaluate_folders

SHAPE = (8, 10, 12)


def _write(path, arr, direction=np.eye(3), spacing=(1.0, 1.5, 2.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, arr.astype(np.uint8), spacing, (0.0, 0.0, 0.0), direction)


def _blocks(**boxes):
    """{id: (z0, z1)} -> label map with slabs of the given ids along z (everything else background)."""
    a = np.zeros(SHAPE, np.uint8)
    for lid, (z0, z1) in boxes.items():
        a[z0:z1, 2:8, 2:10] = int(lid[1:])
    return a


def _gt_dataset(tmp_path, labels, cases):
    ds = tmp_path / "Dataset005_Gt"
    write_dataset_json(_mk(ds), labels, 0)
    for name, arr in cases.items():
        _write(ds / "labelsTs" / f"{name}.nii.gz", arr)
    return ds


def _mk(p):
    p.mkdir(parents=True, exist_ok=True)
    return p


def _pred_dir(tmp_path, labels, cases, name="pred"):
    d = _mk(tmp_path / name)
    if labels is not None:
        (d / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **labels}, "file_ending": ".nii.gz"}))
    for case, arr in cases.items():
        _write(d / f"{case}.nii.gz", arr)
    return d


def test_case_ids_ending_in_four_digits_are_separate_cases(tmp_path):
    """'btcv_0001', 'btcv_0002', 'amos_0005' are three cases, not keys 'btcv' / 'amos' (1 case per dataset)."""
    cases = {"btcv_0001": _blocks(l1=(1, 3)), "btcv_0002": _blocks(l1=(4, 7)), "amos_0005": _blocks(l1=(2, 6))}
    ds = _gt_dataset(tmp_path, ["liver"], cases)
    pred = dict(cases, btcv_0002=_blocks(l1=(4, 6)))  # one case differs
    res = evaluate_folders(_pred_dir(tmp_path, {"liver": 1}, pred), ds / "labelsTs")
    scores = {r["case"]: r["dsc"] for r in res["per_case"]}
    assert set(scores) == {"btcv_0001", "btcv_0002", "amos_0005"}
    assert scores["btcv_0001"] == 1.0 and scores["btcv_0002"] == pytest.approx(0.8)
    assert res["summary"]["liver"]["dsc"]["n"] == 3


def test_two_files_with_one_case_name_are_an_error_naming_both(tmp_path):
    ds = _gt_dataset(tmp_path, ["liver"], {"a": _blocks(l1=(1, 3))})
    _write(ds / "labelsTs" / "a.nii", _blocks(l1=(1, 3)))
    with pytest.raises(ValueError, match=r"a\.nii.*a\.nii\.gz|a\.nii\.gz.*a\.nii"):
        evaluate_folders(_pred_dir(tmp_path, {"liver": 1}, {"a": _blocks(l1=(1, 3))}), ds / "labelsTs")


def test_model_and_gt_with_different_classes_are_matched_by_name(tmp_path):
    """Each folder's own id map is used: with one id map (the prediction folder's) for both, GT 'kidney'
    (id 1) would be scored as 'liver'."""
    gt = _blocks(l1=(0, 2), l2=(3, 6), l3=(7, 8))  # kidney=1, liver=2, spleen=3
    ds = _gt_dataset(tmp_path, ["kidney", "liver", "spleen"], {"c1": gt})
    pred = _blocks(l1=(3, 5), l4=(5, 6), l2=(0, 1), l3=(1, 2))  # liver=1 + liver_tumor=4, kidney sides 2, 3
    model = {"liver": 1, "kidney_left": 2, "kidney_right": 3, "liver_tumor": 4}
    out = tmp_path / "out"
    res = evaluate_folders(_pred_dir(tmp_path, model, {"c1": pred}), ds / "labelsTs", out)
    assert res["summary"]["kidney"]["dsc"]["mean"] == 1.0  # kidney_left + kidney_right
    assert res["summary"]["liver"]["dsc"]["mean"] == 1.0  # liver + liver_tumor (GT has no tumour class)
    assert res["not_predicted"] == ["spleen"] and "spleen" not in res["summary"]
    assert {r["class"] for r in res["per_case"]} == {"kidney", "liver"}
    saved = json.loads((out / "class_mapping.json").read_text())
    assert saved == json.loads((out / "metrics.json").read_text())["class_mapping"]
    liver = next(c for c in saved["classes"] if c["gt_class"] == "liver")
    assert liver["pred_classes"] == ["liver", "liver_tumor"] and liver["pred_ids"] == [1, 4]
    assert (out / "metrics.csv").read_text().splitlines()[0] == "case,class,dsc,nsd,gt_voxels,pred_voxels"


def test_released_model_prediction_without_dataset_json(tmp_path, caplog):
    """Released-model predictions carry AbdomenAtlas ids and a <case>.json sidecar, no dataset.json."""
    ds = _gt_dataset(tmp_path, ["liver", "kidney"], {"c1": _blocks(l1=(0, 3), l2=(4, 6))})
    pred = _pred_dir(tmp_path, None, {"c1": _blocks(l5=(0, 3), l3=(4, 5), l4=(5, 6))})
    (pred / "c1.json").write_text(json.dumps({"labels": {"liver": 5, "kidney_left": 3, "kidney_right": 4}}))
    res = evaluate_folders(pred, ds / "labelsTs")
    assert res["summary"]["liver"]["dsc"]["mean"] == 1.0 and res["summary"]["kidney"]["dsc"]["mean"] == 1.0
    assert "sidecar" in res["class_mapping"]["model_labels"]
    (pred / "c1.json").unlink()  # no sidecar either: AbdomenAtlas 1.1 ids are assumed, with a note
    with caplog.at_level(logging.WARNING):
        res = evaluate_folders(pred, ds / "labelsTs")
    assert res["summary"]["kidney"]["dsc"]["mean"] == 1.0 and "AbdomenAtlas" in caplog.text


def test_unannotated_case_class_pairs_are_skipped(tmp_path):
    ds = _gt_dataset(tmp_path, ["liver", "spleen"], {"c1": _blocks(l1=(0, 3), l2=(4, 6)), "c2": _blocks(l1=(0, 3))})
    write_annotated_classes(ds, {"c1": ["liver", "spleen"], "c2": ["liver"]})
    pred = _pred_dir(tmp_path, {"liver": 1, "spleen": 2}, {"c1": _blocks(l1=(0, 3), l2=(4, 6)),
                                                          "c2": _blocks(l1=(0, 3), l2=(4, 6))})
    res = evaluate_folders(pred, ds / "labelsTs")
    assert ("c2", "spleen") not in {(r["case"], r["class"]) for r in res["per_case"]}
    assert res["summary"]["spleen"]["dsc"] == {"mean": 1.0, "sd": 0.0, "n": 1} and res["skipped_unannotated"] == 1


def test_geometry_check_compares_direction(tmp_path):
    """Size, spacing and origin alone do not catch a flipped prediction; the direction is compared too."""
    arr = _blocks(l1=(0, 3))
    ds = _gt_dataset(tmp_path, ["liver"], {"c1": arr})
    pred = _pred_dir(tmp_path, {"liver": 1}, {})
    _write(pred / "c1.nii.gz", arr, direction=np.diag([-1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"c1\.nii\.gz: direction .* does not match the ground truth"):
        evaluate_folders(pred, ds / "labelsTs")


def test_nan_scores_stay_out_of_means_and_paired_comparison_works(tmp_path):
    gts = {"c1": _blocks(l1=(0, 3)), "c2": _blocks(l1=(0, 3), l2=(4, 6)), "c3": _blocks(l1=(1, 4), l2=(5, 7))}
    ds = _gt_dataset(tmp_path, ["liver", "spleen"], gts)
    a = evaluate_folders(_pred_dir(tmp_path, {"liver": 1, "spleen": 2}, gts, "a"), ds / "labelsTs")
    worse = {c: np.where(g == 2, 0, g) for c, g in gts.items()}
    b = evaluate_folders(_pred_dir(tmp_path, {"liver": 1, "spleen": 2}, worse, "b"), ds / "labelsTs")
    assert math.isnan(next(r["dsc"] for r in a["per_case"] if r["case"] == "c1" and r["class"] == "spleen"))
    assert a["summary"]["spleen"]["dsc"]["n"] == 2  # c1 has no spleen in either: NaN, left out
    cmp = paired_comparison(a, b, "dsc")
    assert cmp["spleen"]["n"] == 2 and cmp["spleen"]["diff"] == 1.0 and cmp["liver"]["diff"] == 0.0


def test_cli_prints_and_saves_the_mapping(tmp_path, capsys):
    ds = _gt_dataset(tmp_path, ["kidneys", "brain"], {"c1": _blocks(l1=(0, 3))})
    pred = _pred_dir(tmp_path, None, {"c1": _blocks(l1=(0, 2), l2=(2, 3))})
    labels = tmp_path / "model_labels.json"
    labels.write_text(json.dumps({"left kidney": 1, "right kidney": 2}))
    assert evaluate_cli([str(pred), str(ds / "labelsTs"), "--pred-labels", str(labels), "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "kidney_left + kidney_right" in out and "not predicted" in out and "brain" in out
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["summary"]["kidney"]["dsc"]["mean"] == 1.0
