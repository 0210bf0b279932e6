"""Our data path (torch resampling, chunked argmax export, body crop) against nnunetv2's own predictor."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
from scipy import ndimage

from suprem_nnunet.inference.predict import build_network, make_predictor
from suprem_nnunet.benchmarks.reference_nets import band_model, band_phantom
from suprem_nnunet.preprocessing.plans_manager import SupremPlansManager
from suprem_nnunet.preprocessing.resampling import resample_like_nnunet, resample_logits_to_labels

CASES = [((20, 26, 18), (30, 17, 27), (1.5, 1.0, 1.0), (1.0, 1.5, 0.66)),  # 3D spline
         ((6, 30, 28), (24, 20, 19), (5.0, 1.0, 1.0), (1.25, 1.5, 1.5)),  # separate low-resolution axis 0
         ((28, 30, 6), (19, 20, 24), (1.0, 1.0, 5.0), (1.5, 1.5, 1.25))]  # ... axis 2


@pytest.mark.parametrize("shape,new,cur,target", CASES)
def test_torch_resampling_equals_nnunets(shape, new, cur, target):
    d = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(3, *shape)), 1.0).astype(np.float32)
    want = resample_data_or_seg_to_shape(d, new, cur, target, False, 3, 0, None)
    got = resample_like_nnunet(d, new, cur, target, False, 3, 0, None)
    assert got.dtype == want.dtype and np.abs(got - want).max() < 1e-5
    labels = resample_logits_to_labels(torch.from_numpy(d), new, cur, target, budget_bytes=1)  # one row a chunk
    assert np.array_equal(labels, resample_data_or_seg_to_shape(d, new, cur, target, False, 1, 0, None).argmax(0))


@pytest.fixture(scope="module")
def ct(tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("fast_path")
    hu, _ = band_phantom((40, 56, 60), 4, seed=3)
    pad = np.full((40, 120, 124), -1000, np.int16)  # air around the body: the body crop has work to do
    pad[:, 32:88, 32:92] = hu
    img = sitk.GetImageFromArray(pad)
    img.SetSpacing((1.3, 1.2, 1.5))
    sitk.WriteImage(img, str(root / "ct.nii.gz"))
    return root / "ct.nii.gz"


def test_our_predictor_matches_nnunets(ct):
    """Same model, same settings (mirroring on, step 0.5) on both sides; DSC >= 0.99 per class."""
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    names = ["liver", "spleen", "aorta"]
    model = band_model(names, spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16))
    ours = make_predictor(model, torch.device("cpu"), mirror=True)
    data, props = ours.preprocess([str(ct)])
    got = ours.predict_case([str(ct)]).segmentation
    assert ours.windows_skipped > 0 and ours.windows_run > 0  # the body crop is exercised

    ref = nnUNetPredictor(tile_step_size=0.5, use_mirroring=True, device=torch.device("cpu"), allow_tqdm=False)
    pm = SupremPlansManager(model.plans)
    ref.manual_initialization(build_network(model), pm, pm.get_plain_configuration("3d_fullres")
                              if hasattr(pm, "get_plain_configuration") else pm.get_configuration("3d_fullres"),
                              [model.state_dict], model.dataset_json, model.trainer_name, (0, 1, 2))
    rdata, _, rprops = ref.configuration_manager.preprocessor_class().run_case(
        [str(ct)], None, ref.plans_manager, ref.configuration_manager, ref.dataset_json)
    assert np.abs(rdata - data).max() < 1e-4  # torch resampling: the same preprocessed array
    want = convert_predicted_logits_to_segmentation_with_correct_shape(
        ref.predict_logits_from_preprocessed_data(torch.from_numpy(rdata)).cpu(), ref.plans_manager,
        ref.configuration_manager, ref.label_manager, rprops)
    assert got.shape == want.shape
    for k in range(1, len(names) + 1):
        a, b = got == k, want == k
        assert b.sum() > 100, k
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99, k


def test_probability_grid_geometry_places_the_network_grid(ct):
    """The stored geometry of the network grid maps the preprocessed image back onto the input."""
    model = band_model(["liver"], spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16))
    p = make_predictor(model, torch.device("cpu"))
    data, props = p.preprocess([str(ct)])
    g = p.network_grid_geometry(props, data.shape[1:])
    img = sitk.ReadImage(str(ct))
    net = sitk.GetImageFromArray(data[0])
    net.SetSpacing(g["spacing"]), net.SetOrigin(g["origin"]), net.SetDirection(g["direction"])
    back = sitk.GetArrayFromImage(sitk.Resample(net, img, sitk.Transform(), sitk.sitkLinear, 0.0))
    ref = np.clip(sitk.GetArrayFromImage(img), -1000, 1000) / 100.0
    err = {s: np.abs(ndimage.shift(back, s, order=1) - ref)[3:-3, 3:-3, 3:-3].mean()
           for s in [(0, 0, 0), (0, 0, 0.5), (0, 0, -0.5), (0, 0.5, 0), (0, -0.5, 0), (0.5, 0, 0), (-0.5, 0, 0)]}
    assert min(err, key=err.get) == (0, 0, 0), err  # half a voxel off in any direction is worse
