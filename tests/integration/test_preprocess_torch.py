"""Our preprocessor (torch resampling of image and labels) against nnunetv2's DefaultPreprocessor, and its use
by dataset preprocessing."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from scipy import ndimage

from suprem_nnunet.benchmarks.reference_nets import band_model, band_phantom
from suprem_nnunet.preprocessing.plans_manager import SupremPlansManager
from suprem_nnunet.preprocessing.resampling import resample_seg_like_nnunet
from suprem_nnunet.preprocessing.run import PREPROCESSOR_ENV, SupremPreprocessor, _preprocessor

CASES = [((20, 26, 18), (30, 17, 27), (1.5, 1.0, 1.0), (1.0, 1.5, 0.66)),  # 3D
         ((6, 30, 28), (24, 20, 19), (5.0, 1.0, 1.0), (1.25, 1.5, 1.5)),  # separate low-resolution axis 0
         ((28, 30, 6), (19, 20, 24), (1.0, 1.0, 5.0), (1.5, 1.5, 1.25)),  # ... axis 2
         ((16, 18, 20), (32, 36, 40), (2.0, 2.0, 2.0), (1.0, 1.0, 1.0))]  # x2: exact ties at every boundary


@pytest.mark.parametrize("shape,new,cur,target", CASES)
def test_torch_label_resampling_equals_nnunets(shape, new, cur, target):
    rng = np.random.default_rng(0)
    seg = (ndimage.gaussian_filter(rng.normal(size=shape), 1.5) * 30).astype(np.int8).clip(-1, 4)[None]
    want = resample_data_or_seg_to_shape(seg, new, cur, target, True, 1, 0, None)
    got = resample_seg_like_nnunet(seg, new, cur, target, True, 1, 0, None, budget_bytes=1)  # one row a chunk
    assert got.dtype == want.dtype and got.shape == want.shape
    assert (got != want).mean() <= 1e-3


def test_dataset_preprocessing_uses_ours_unless_asked(monkeypatch, tmp_path):
    """Plans naming only nnU-Net code get our preprocessor too, not nnU-Net's DefaultPreprocessor (scipy
    resampling), unless the environment asks for nnU-Net's."""
    pm = SupremPlansManager(band_model(["liver"]).plans)
    monkeypatch.delenv(PREPROCESSOR_ENV, raising=False)
    assert type(_preprocessor(pm, "3d_fullres", tmp_path / "plans.json")) is SupremPreprocessor
    monkeypatch.setenv(PREPROCESSOR_ENV, "nnunet")
    assert type(_preprocessor(pm, "3d_fullres", tmp_path / "plans.json")) is DefaultPreprocessor


def test_our_preprocessor_matches_nnunets_image_and_labels(tmp_path, one_torch_thread):
    hu, labels = band_phantom((24, 40, 36), 5, seed=2)
    for arr, name in ((hu, "ct.nii.gz"), (labels, "seg.nii.gz")):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.9, 1.1, 2.5))
        sitk.WriteImage(img, str(tmp_path / name))
    model = band_model(["liver", "spleen", "aorta", "stomach"], spacing=(1.5, 1.5, 1.5))
    pm = PlansManager(model.plans)
    cm = pm.get_configuration("3d_fullres")
    args = ([str(tmp_path / "ct.nii.gz")], str(tmp_path / "seg.nii.gz"), pm, cm, model.dataset_json)
    ref, ref_seg, ref_props = DefaultPreprocessor(verbose=False).run_case(*args)
    got, got_seg, got_props = SupremPreprocessor(verbose=False).run_case(*args)
    assert got.shape == ref.shape and got_seg.shape == ref_seg.shape and got_seg.dtype == ref_seg.dtype
    assert np.abs(got - ref).max() <= 1e-3 * float(ref.max() - ref.min())  # stated tolerance: 1 % (seen: 1e-6)
    for k in range(1, 5):
        a, b = got_seg == k, ref_seg == k
        assert b.sum() > 20
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99
    assert got_props["class_locations"].keys() == ref_props["class_locations"].keys()
