"""SuPreM-preset plans: RAS reader/writer, dotted-name lookups, release-grid resampling, prediction geometry."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from suprem_nnunet.preprocessing.plans_manager import RAS_READER, SupremPlansManager
from suprem_nnunet.preprocessing.ras_io import RASSimpleITKIO
from suprem_nnunet.preprocessing.resampling import (ORIGIN_ALIGNED, RESAMPLE_THEN_WINDOW, resample_origin_aligned,
                                                    resample_then_window)

ORIENTATIONS = ["RAS", "LPS", "PIL", "SLA"]  # as the release wants, as conversion writes, two permuted


def ras_ct() -> sitk.Image:
    """A small RAS image whose every voxel value is distinct (a flipped or permuted axis shows)."""
    arr = np.arange(7 * 6 * 5, dtype=np.float32).reshape(7, 6, 5) * 3.0 - 300.0  # z, y, x
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 2.0, 3.0))
    img.SetOrigin((40.0, -12.0, 7.0))
    return sitk.DICOMOrient(img, "RAS")


@pytest.mark.parametrize("code", ORIENTATIONS)
def test_reader_gives_ras_arrays_and_writer_restores_the_input_grid(tmp_path, code):
    ras = ras_ct()
    img = sitk.DICOMOrient(ras, code)
    f = tmp_path / "ct_0000.nii.gz"
    sitk.WriteImage(img, str(f))
    arr, props = RASSimpleITKIO().read_images([str(f)])
    assert arr.shape == (1, 7, 6, 5) and np.array_equal(arr[0], sitk.GetArrayFromImage(ras))
    assert props["spacing"] == [3.0, 2.0, 1.0] and props["original_orientation"] == code
    seg, _ = RASSimpleITKIO().read_seg(str(f))
    assert np.array_equal(seg, arr)

    labels = (arr[0] > arr[0].mean()).astype(np.uint8) + (arr[0] > arr[0].max() - 20)  # 0, 1, 2
    RASSimpleITKIO().write_seg(labels, str(tmp_path / "seg.nii.gz"), props)
    out = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(out, get)() == getattr(img, get)(), get
    expected = sitk.GetArrayFromImage(img)
    expected = (expected > expected.mean()).astype(np.uint8) + (expected > expected.max() - 20)
    assert np.array_equal(sitk.GetArrayFromImage(out), expected)


def test_plans_manager_resolves_our_dotted_names():
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cfg = {"resampling_fn_data": RESAMPLE_THEN_WINDOW,
           "resampling_fn_data_kwargs": {"is_seg": False, "order": 1, "window": [-175.0, 250.0]},
           "resampling_fn_seg": ORIGIN_ALIGNED, "resampling_fn_seg_kwargs": {"is_seg": True, "order": 0},
           "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
           "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1}, "architecture": {}}
    plans = {"image_reader_writer": RAS_READER, "configurations": {"3d_fullres": cfg}}
    with pytest.raises(Exception):  # nnunetv2 looks names up inside its own package only
        PlansManager(plans).image_reader_writer_class
    pm = SupremPlansManager(plans)
    assert pm.image_reader_writer_class is RASSimpleITKIO and pm.names_own_code
    cm = pm.get_configuration("3d_fullres")
    assert cm.resampling_fn_data.func is resample_then_window and cm.resampling_fn_seg.func is resample_origin_aligned
    assert cm.resampling_fn_probabilities.func.__module__.startswith("nnunetv2.")
    assert not SupremPlansManager({"image_reader_writer": "SimpleITKIO", "configurations": {}}).names_own_code
    with pytest.raises(ValueError, match="image_reader_writer"):
        SupremPlansManager({"image_reader_writer": "suprem_nnunet.nowhere.Reader"}).image_reader_writer_class


def test_resampling_keeps_voxel_zero_and_windows_after_interpolation():
    x = np.array([-1000.0, 1000.0, 0.0], np.float32)[None, :, None, None] * np.ones((1, 3, 2, 2), np.float32)
    up = resample_origin_aligned(x, (6, 4, 4), (3.0, 3.0, 3.0), (1.5, 1.5, 1.5))
    assert np.allclose(up[0, :, 0, 0], [-1000, 0, 1000, 500, 0, 0])  # voxel 0 kept, border repeats
    w = resample_then_window(x, (6, 4, 4), (3.0, 3.0, 3.0), (1.5, 1.5, 1.5), window=(-175.0, 250.0))
    # midway between -1000 and 1000 HU is 0 HU -> (0 + 175) / 425; clipping first would give 0.5 * (0 + 1)
    assert np.allclose(w[0, :, 0, 0], np.clip((np.array([-1000, 0, 1000, 500, 0, 0]) + 175) / 425, 0, 1))
    seg = np.array([0, 1, 2], np.int8)[None, :, None, None] * np.ones((1, 3, 2, 2), np.int8)
    s = resample_origin_aligned(seg, (6, 4, 4), (3.0, 3.0, 3.0), (1.5, 1.5, 1.5), is_seg=True, order=3)
    assert s.dtype == np.int8 and set(np.unique(s)) == {0, 1, 2}


class ThresholdNet(nn.Module):
    """Two logits deciding 'windowed intensity > 0.5' (HU > 37.5): a prediction that shows the layout."""

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * torch.cat([0.5 - x, x - 0.5], 1)


def preset_plans() -> dict:
    from suprem_nnunet.planning.planner import preset_reader, preset_resampling
    from suprem_nnunet.planning.presets import load_preset

    preset = load_preset("unet")
    cfg = {"data_identifier": "x", "preprocessor_name": "DefaultPreprocessor", "batch_size": 1,
           "patch_size": [16, 16, 16], "median_image_size_in_voxels": [16, 16, 16], "spacing": [1.5, 1.5, 1.5],
           "normalization_schemes": ["NoNormalization"], "use_mask_for_norm": [False], "batch_dice": False,
           "architecture": {"network_class_name": "test_orientation_io.ThresholdNet", "arch_kwargs": {},
                            "_kw_requires_import": []}, **preset_resampling(preset)}
    return {"dataset_name": "Dataset099_X", "plans_name": "p", "image_reader_writer": preset_reader(preset),
            "transpose_forward": [2, 1, 0], "transpose_backward": [2, 1, 0], "configurations": {"3d_fullres": cfg},
            "label_manager": "LabelManager", "original_median_spacing_after_transp": [3, 3, 3],
            "original_median_shape_after_transp": [16, 16, 16],
            "foreground_intensity_properties_per_channel": {"0": {}}, "suprem": {"backbone": "unet"}}


@pytest.mark.parametrize("code", ["PIL", "LPS"])
def test_preset_model_predicts_in_the_input_geometry_and_layout(tmp_path, code):
    from suprem_nnunet.inference.predict import predict
    from suprem_nnunet.models.trained import TrainedModel
    rng = np.random.default_rng(0)
    hu = np.full((10, 12, 14), -300.0, np.float32)  # z, y, x of the RAS image
    hu[2:7, 3:10, 2:6] = 300.0  # an off-centre box: a flip or permutation moves it
    hu += rng.normal(0, 5, hu.shape).astype(np.float32)
    ras = sitk.GetImageFromArray(hu)
    ras.SetSpacing((3.0, 3.0, 3.0))
    ras = sitk.DICOMOrient(ras, "RAS")
    img = sitk.DICOMOrient(ras, code)
    sitk.WriteImage(img, str(tmp_path / "case_0000.nii.gz"))
    model = TrainedModel(tmp_path / "model", {}, preset_plans(),
                         {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1},
                          "numTraining": 1, "file_ending": ".nii.gz"}, "3d_fullres", "SupremTrainer", None)
    [out_file] = predict(tmp_path / "case_0000.nii.gz", tmp_path / "pred", model, device="cpu")
    out = sitk.ReadImage(str(out_file))
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(out, get)(), getattr(img, get)()), get
    pred, want = sitk.GetArrayFromImage(out) == 1, sitk.GetArrayFromImage(img) > 37.5
    assert 2 * (pred & want).sum() / (pred.sum() + want.sum()) > 0.95
