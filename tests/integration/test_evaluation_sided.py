"""Tumours hosted by a union organ (kidney_cyst in kidney, lung_tumor in lung) scored with the side
they lie in, and plain cases unchanged: DSC equal to nnU-Net's compute_metrics_on_folder."""
import json
import math

import numpy as np
import pytest

from suprem_nnunet.dataset.raw import write_image
from suprem_nnunet.evaluation.class_matching import format_mapping, match_classes
from suprem_nnunet.evaluation.evaluate import evaluate_folders
from suprem_nnunet.evaluation.metrics import dice
from suprem_nnunet.dataset.tumour_parts import split_by_part
from suprem_nnunet.labels import ATLAS_IDS

SPACING_XYZ = (0.8, 0.8, 2.5)
A = ATLAS_IDS


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, arr.astype(np.uint8), SPACING_XYZ, (0.0, 0.0, 0.0), np.eye(3))


def _phantom():
    """(z, y, x) label map with AbdomenAtlas ids: liver, both kidneys, both lungs (no tumours)."""
    a = np.zeros((16, 40, 48), np.uint8)
    a[2:8, 4:16, 4:20] = A["liver"]
    a[2:9, 20:32, 4:16] = A["kidney_right"]
    a[2:9, 20:32, 32:44] = A["kidney_left"]
    a[10:16, 4:30, 2:20] = A["lung_right"]
    a[10:16, 4:30, 28:46] = A["lung_left"]
    return a


def _evaluate(tmp_path, gt, pred, gt_labels, model_labels=A):
    ds = tmp_path / "Dataset009_Gt"
    ds.mkdir(parents=True, exist_ok=True)
    (ds / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **gt_labels}, "file_ending": ".nii.gz",
                                                 "channel_names": {"0": "CT"}, "numTraining": 1}))
    _write(ds / "labelsTs" / "c1.nii.gz", gt)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir(exist_ok=True)
    (pred_dir / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **model_labels}}))
    _write(pred_dir / "c1.nii.gz", pred)
    res = evaluate_folders(pred_dir, ds / "labelsTs")
    return {r["class"]: r["dsc"] for r in res["per_case"]}, res


GT_SIDES = {"liver": 1, "kidney_left": 2, "kidney_right": 3, "lung_left": 4, "lung_right": 5}  # no tumour classes


def _gt_from_atlas(a):
    """The phantom in GT_SIDES ids, every tumour drawn as the organ it lies in (as WORD/BTCV do)."""
    g = np.zeros_like(a)
    for name, lid in GT_SIDES.items():
        g[a == A[name]] = lid
    return g


def test_perfect_prediction_with_a_cyst_in_the_left_kidney_scores_one(tmp_path):
    """The bug: kidney_left was compared with kidney_cyst's host 'kidney' by name, so the GT
    kidney_left never took the cyst: DSC 0.744 for a perfect prediction."""
    pred = _phantom()
    pred[4:7, 23:29, 35:41] = A["kidney_cyst"]  # inside the left kidney
    pred[4:6, 6:10, 8:12] = A["liver_tumor"]
    gt = _gt_from_atlas(_phantom())
    scores, res = _evaluate(tmp_path, gt, pred, GT_SIDES)
    assert scores["kidney_left"] == 1.0 and scores["kidney_right"] == 1.0 and scores["liver"] == 1.0
    m = next(c for c in res["class_mapping"]["classes"] if c["gt_class"] == "kidney_left")
    assert tuple(m["pred_sided"]["tumour_classes"]) == ("kidney_tumor", "kidney_cyst")
    assert m["rule"] == "same name + hosted tumours"
    assert "kidney_cyst (components touching kidney_left most)" in format_mapping(res["class_mapping"])
    assert "kidney_cyst" not in res["class_mapping"]["model_classes_not_in_gt"]


def test_a_cyst_in_each_kidney_and_a_tumour_in_each_lung_go_to_their_sides(tmp_path):
    pred = _phantom()
    pred[4:7, 23:29, 35:41] = A["kidney_cyst"]
    pred[3:8, 22:30, 6:13] = A["kidney_cyst"]  # right kidney
    pred[5:8, 26:32, 8:14] = A["kidney_tumor"]  # right kidney, touching its cyst: one component
    pred[12:15, 10:20, 30:40] = A["lung_tumor"]  # left lung
    pred[11:14, 8:14, 5:10] = A["lung_tumor"]  # right lung
    gt = _gt_from_atlas(_phantom())
    scores, _ = _evaluate(tmp_path, gt, pred, GT_SIDES)
    assert all(scores[c] == 1.0 for c in GT_SIDES), scores


def test_gt_tumours_the_model_cannot_predict_go_to_the_gt_side_they_lie_in(tmp_path):
    """Symmetric case: the GT labels kidney_cyst, the model has no tumour classes."""
    base = _phantom()
    gt_labels = {**GT_SIDES, "kidney_cyst": 6}
    gt = _gt_from_atlas(base)
    gt[4:7, 23:29, 35:41] = 6  # in the left kidney
    model = {n: A[n] for n in GT_SIDES}
    scores, res = _evaluate(tmp_path, gt, base, gt_labels, model)
    assert scores["kidney_left"] == 1.0 and scores["kidney_right"] == 1.0
    assert "kidney_cyst" in res["not_predicted"]
    left = next(c for c in res["class_mapping"]["classes"] if c["gt_class"] == "kidney_left")
    assert tuple(left["gt_sided"]["tumour_ids"]) == (6,) and tuple(left["gt_sided"]["part_ids"]) == (2, 3)


def test_split_rule_contact_then_centroid_then_table_order():
    """Unit: voxels; one label map with parts 1 (left) and 2 (right), tumour id 9."""
    a = np.zeros((6, 10, 30), np.uint8)
    a[:, :, 0:10], a[:, :, 20:30] = 1, 2
    a[2:4, 2:4, 10:12] = 9  # touches part 1 only (x=10 is next to x=9)
    a[2:4, 6:8, 17:20] = 9  # touches part 2 only
    b = a.copy()
    b[0:2, 0:2, 12:18] = 9  # touches neither: nearer to part 1's centroid (x 4.5) than part 2's (x 24.5)
    out = split_by_part(b, [9], [1, 2])
    assert out[1][2:4, 2:4, 10:12].all() and out[2][2:4, 6:8, 17:20].all()
    assert out[1][0:2, 0:2, 12:18].all() and not out[2][0:2, 0:2, 12:18].any()
    assert (out[1] | out[2]).sum() == (b == 9).sum() and not (out[1] & out[2]).any()
    c = np.zeros((6, 10, 30), np.uint8)
    c[:, :, 0:10], c[:, :, 20:30] = 1, 2
    c[:, 4:6, 10:20] = 9  # a bridge touching both, 12 voxels each, centroid in the middle: table order
    out = split_by_part(c, [9], [1, 2])
    assert out[1].sum() == 120 and not out[2].any()
    c[:, 4:6, 20] = 9  # the bridge cuts one column into part 2: 24 contact voxels with part 2, 12 with part 1
    out = split_by_part(c, [9], [1, 2], spacing=(1.0, 1.0, 1.0))
    assert out[2].any() and not out[1].any()
    only_right = split_by_part(a, [9], [2])  # a part the map does not have is never chosen over one it has
    assert only_right[2].sum() == (a == 9).sum()


def test_match_classes_splits_union_tumours_only_for_parts():
    m = {c.gt_class: c for c in match_classes(A, {"kidney_left": 1, "kidney": 2, "lung": 3}).matches}
    assert m["kidney_left"].pred_sided.part_ids == (A["kidney_left"], A["kidney_right"])
    assert m["kidney_left"].pred_sided.tumour_ids == (A["kidney_tumor"], A["kidney_cyst"])
    assert m["kidney"].pred_sided is None and A["kidney_cyst"] in m["kidney"].pred_ids  # the union takes all
    kits = {c.gt_class: c for c in match_classes(A, {"kidney_left": 1, "kidney_cyst": 2}).matches}
    assert kits["kidney_left"].pred_sided.tumour_classes == ("kidney_tumor",)  # the GT scores cysts itself


def test_plain_case_dsc_equals_nnunet_compute_metrics_on_folder(tmp_path):
    """n = 3 cases x 5 classes; includes an empty GT with a non-empty prediction (nnU-Net: 0, MONAI's
    compute_dice: NaN) and both empty (NaN in both)."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    rng = np.random.default_rng(3)
    labels = {"liver": 1, "spleen": 2, "pancreas": 3, "aorta": 4, "stomach": 5}
    ds = tmp_path / "Dataset010_Plain"
    ds.mkdir()
    (ds / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **labels}, "file_ending": ".nii.gz"}))
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    (pred_dir / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **labels}}))
    for i in range(3):
        g = rng.integers(0, 5, (12, 14, 16)).astype(np.uint8)
        p = np.where(rng.random(g.shape) < 0.3, rng.integers(0, 5, g.shape), g).astype(np.uint8)
        if i == 0:
            p[0, 0, 0] = 5  # stomach: empty GT, one predicted voxel
        _write(ds / "labelsTs" / f"c{i}.nii.gz", g)
        _write(pred_dir / f"c{i}.nii.gz", p)
    ours = {(r["case"], r["class"]): r["dsc"] for r in evaluate_folders(pred_dir, ds / "labelsTs")["per_case"]}
    ref = compute_metrics_on_folder(str(ds / "labelsTs"), str(pred_dir), None, SimpleITKIO(), ".nii.gz",
                                    list(labels.values()), num_processes=1)
    inv = {v: k for k, v in labels.items()}
    n = 0
    for case in ref["metric_per_case"]:
        name = case["reference_file"].split("/")[-1][:-len(".nii.gz")]
        for lid, m in case["metrics"].items():
            a, b = ours[(name, inv[int(lid)])], m["Dice"]
            assert (math.isnan(a) and math.isnan(b)) or a == b, (name, lid, a, b)
            n += 1
    assert n == 15 and ours[("c0", "stomach")] == 0.0 and math.isnan(ours[("c1", "stomach")])
    empty, one = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    one[1, 1, 1] = True
    assert dice(one, empty) == 0.0
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_dice

    def onehot(x):
        return torch.from_numpy(np.stack([~x, x])[None].astype(np.float32))
    assert math.isnan(float(compute_dice(onehot(one), onehot(empty))[0, 1]))  # MONAI: empty GT -> NaN
