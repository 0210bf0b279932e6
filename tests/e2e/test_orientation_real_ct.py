"""Proof on a real CT: fine-tuning from a release feeds its body what direct inference feeds it.

The TotalSegmentator example CT (RAS, 3 mm) and a copy permuted to PIL are planned and preprocessed
with `--preset suprem --backbone unet` (what `suprem_finetune --pretrained <release>` runs); each
preprocessed array is compared with `zoo.predict.preprocess_ct` (the release's direct inference) on
the same file, then both go through the SuPreM U-Net body (release width 32, fixed random weights:
no release can be downloaded here) and the last decoder features, below the text-driven head that
fine-tuning replaces, are compared. Tolerances: intensities within 1e-4 on the [0, 1] scale (float
rounding: same grid, same interpolation, same clip order); decoder features Pearson r >= 0.99.
Negative control: nnU-Net's default handling of the same plans (file's own voxel layout, axes
transposed by the fingerprint's choice, resampling on nnU-Net's grid, clip before resampling)
gives clearly lower agreement.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers.cli import run_cli
from helpers.paths import real_data

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

CROP = 48  # a centred 48^3 crop (divisible by 8) of each 244 x 202 x 60 volume: ~1 s per forward pass


def crop(a: np.ndarray) -> np.ndarray:
    start = [(n - CROP) // 2 for n in a.shape]
    return np.ascontiguousarray(a[tuple(slice(s, s + CROP) for s in start)])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def old_plans(plans: dict) -> dict:
    """The same plans with nnU-Net's default image handling (what the preset plans were before)."""
    old = copy.deepcopy(plans)
    old["image_reader_writer"] = "SimpleITKIO"
    old["transpose_forward"] = old["transpose_backward"] = [0, 1, 2]  # nnU-Net's choice for isotropic spacing
    cfg = old["configurations"]["3d_fullres"]
    cfg["normalization_schemes"] = ["CTNormalization"]
    for key, is_seg, order in (("data", False, 3), ("seg", True, 1), ("probabilities", False, 1)):
        cfg[f"resampling_fn_{key}"] = "resample_data_or_seg_to_shape"
        cfg[f"resampling_fn_{key}_kwargs"] = {"is_seg": is_seg, "order": order, "order_z": 0,
                                              "force_separate_z": None}
    return old


def test_finetuning_feeds_the_release_body_what_direct_inference_feeds_it(tmp_path):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from suprem_nnunet.dataset.raw import write_dataset_json
    from suprem_nnunet.networks.unet3d import SuPreMUNet3D
    from suprem_nnunet.zoo.predict import preprocess_ct
    from suprem_nnunet.planning.presets import load_preset

    folder = real_data("totalseg_example_sm")
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    liver = sitk.Cast(sitk.BinaryThreshold(sitk.ReadImage(str(folder / "seg_total_v2.nii.gz")), 5, 5, 1, 0),
                      sitk.sitkUInt8)  # TotalSegmentator v2 id 5
    env = {"nnUNet_raw": tmp_path / "raw", "nnUNet_preprocessed": tmp_path / "pre",
           "nnUNet_results": tmp_path / "res", "nnUNet_n_proc_DA": "0"}
    raw = tmp_path / "raw" / "Dataset061_Orient"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    for code in ("RAS", "PIL"):  # the release's orientation, and a permuted, flipped copy of the same CT
        sitk.WriteImage(sitk.DICOMOrient(ct, code), str(raw / "imagesTr" / f"c{code.lower()}_0000.nii.gz"))
        sitk.WriteImage(sitk.DICOMOrient(liver, code), str(raw / "labelsTr" / f"c{code.lower()}.nii.gz"))
    write_dataset_json(raw, ["liver"], 2)
    run_cli("plan_and_preprocess", "-d", 61, "-b", "unet", "--preset", "suprem", "--max-patch", 32, "-np", 1,
            env=env)
    pre = tmp_path / "pre" / "Dataset061_Orient"
    plans = json.loads((pre / "suprem_unet_preset-suprem.json").read_text())
    assert plans["image_reader_writer"].endswith("RASSimpleITKIO") and plans["transpose_forward"] == [2, 1, 0]
    data_dir = pre / plans["configurations"]["3d_fullres"]["data_identifier"]
    ds = infer_dataset_class(str(data_dir))(str(data_dir))

    preset = load_preset("unet")
    direct, _ = preprocess_ct(ct, preset)  # (x, y, z) along R, A, S at 1.5 mm, in [0, 1]
    assert direct.shape == (244, 202, 60)
    fed, segs = {}, {}
    for case in ("cras", "cpil"):
        data, seg, _, _ = ds.load_case(case)
        fed[case], segs[case] = np.asarray(data)[0], np.asarray(seg)[0]
        own, _ = preprocess_ct(sitk.ReadImage(str(raw / "imagesTr" / f"{case}_0000.nii.gz")), preset)
        assert np.array_equal(own, direct)  # direct inference is orientation-independent
        assert fed[case].shape == direct.shape, case  # same axis order (x, y, z)
        assert np.abs(fed[case] - direct).max() < 1e-4, case  # same orientation, grid and intensities
        assert pearson(fed[case], direct) > 0.9999
    assert np.array_equal(segs["cras"], segs["cpil"]) and (segs["cras"] == 1).sum() > 1000
    # the liver lies on the patient's right: x grows towards R in RAS arrays
    assert np.argwhere(segs["cras"] == 1)[:, 0].mean() > 0.6 * direct.shape[0]

    # the old handling: nnU-Net's reader, transpose and resampling on the same plans
    old_pm = PlansManager(old_plans(plans))
    old = {}
    for case in ("cras", "cpil"):
        data, _, _ = DefaultPreprocessor(verbose=False).run_case(
            [str(raw / "imagesTr" / f"{case}_0000.nii.gz")], None, old_pm, old_pm.get_configuration("3d_fullres"),
            json.loads((raw / "dataset.json").read_text()))
        old[case] = data[0]
    assert old["cras"].shape == (60, 202, 244) and old["cpil"].shape == (244, 60, 202)  # (z, y, x) / (L, I, P)

    torch.manual_seed(0)
    body = SuPreMUNet3D(1, 32, base_features=32).eval()  # the release's width; head not compared

    def decoder_features(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return body.features(torch.from_numpy(crop(a))[None, None])[1].numpy()

    ref = decoder_features(direct)
    for case in ("cras", "cpil"):
        assert pearson(decoder_features(fed[case]), ref) >= 0.99, case
        assert pearson(decoder_features(old[case]), ref) < 0.8, case  # negative control
