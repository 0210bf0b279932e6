"""A real CT (TotalSegmentator example, 3 mm) through plan, preprocess, training and prediction."""
import numpy as np
import pytest
import SimpleITK as sitk

from suprem_nnunet.dataset.raw import write_annotated_classes, write_dataset_json
from suprem_nnunet.labels import totalseg_v2_id_to_unified

from helpers.paths import real_data

pytestmark = pytest.mark.slow

CLASSES = ["liver", "spleen", "kidney_left", "kidney_right", "stomach", "aorta", "postcava", "pancreas"]


def test_real_ct_end_to_end(nnunet_env, tmp_path):
    from suprem_nnunet.inference.predict import predict
    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess, plans_name_for
    from suprem_nnunet.training.base import SupremPretrainer, TrainingBudget
    from suprem_nnunet.training.run import build_trainer, train

    folder = real_data("totalseg_example_sm")
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "seg_total_v2.nii.gz")))
    lab = np.zeros(seg.shape, np.uint8)
    for ts_id, name in totalseg_v2_id_to_unified().items():
        if name in CLASSES:
            lab[seg == ts_id] = CLASSES.index(name) + 1
    assert all((lab == i + 1).sum() > 50 for i in range(len(CLASSES))), "every class should be in the example"

    raw = nnunet_env / "nnUNet_raw" / "Dataset050_RealCT"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    sitk.WriteImage(ct, str(raw / "imagesTr" / "ts_example_0000.nii.gz"))
    label = sitk.GetImageFromArray(lab)
    label.CopyInformation(ct)
    sitk.WriteImage(label, str(raw / "labelsTr" / "ts_example.nii.gz"))
    write_dataset_json(raw, CLASSES, 1)
    write_annotated_classes(raw, {"ts_example": CLASSES})

    plans = plan_and_preprocess("Dataset050_RealCT", "nnunet", ("3d_fullres",),
                                PlanningCaps((32, 48, 48), 4, 32, 2), num_processes=1)
    cfg = plans["configurations"]["3d_fullres"]
    assert np.allclose(cfg["spacing"], [3.0, 3.0, 3.0], atol=0.01)
    assert cfg["patch_size"][0] <= 32 and max(cfg["patch_size"]) <= 48

    trainer = build_trainer(SupremPretrainer, "Dataset050_RealCT", plans_name_for("nnunet"))
    out = train(trainer, TrainingBudget(epochs=1, iterations_per_epoch=3, val_iterations=1))
    assert (out / "checkpoint_final.pth").is_file()

    written = predict(folder / "ct.nii.gz", tmp_path / "pred", out.parent, device="cpu", per_class=True)
    assert [p.name for p in written] == ["ct.nii.gz"]
    pred = sitk.ReadImage(str(written[0]))
    assert pred.GetSize() == ct.GetSize() == (122, 101, 30)
    assert np.allclose(pred.GetSpacing(), ct.GetSpacing())
    assert np.allclose(pred.GetOrigin(), ct.GetOrigin())
    assert np.allclose(pred.GetDirection(), ct.GetDirection())
    assert set(np.unique(sitk.GetArrayFromImage(pred))) <= set(range(len(CLASSES) + 1))
    assert len(list((tmp_path / "pred" / "ct").glob("*.nii.gz"))) == len(CLASSES)
