"""The fast --roi-subset (coarse pass, then the model on the input cropped to the ROI) against the full
run, on a band phantom with a small U-Net trained for it (benchmarks/trained_reference.py)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from suprem_nnunet.cli import predict as predict_cli
from suprem_nnunet.inference.fast_roi import FastRoiPredictor, crop_properties
from suprem_nnunet.inference.outputs import keep_classes
from suprem_nnunet.inference.predict import make_predictor, predict
from suprem_nnunet.benchmarks.reference_nets import band_phantom
from suprem_nnunet.benchmarks.trained_reference import train_band_unet

NAMES = ["liver", "spleen", "kidney_left", "kidney_right", "aorta"]
HU_STEP = 60.0
#: the phantom (z, y, x) at 1.2 x 1.2 x 1.6 mm: wide enough that the crop around liver + kidney is a part of it
SHAPE = (40, 160, 160)


def _write(path, hu, origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((1.2, 1.2, 1.6))
    img.SetOrigin(origin)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture(scope="module")
def case(tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("roi_fast")
    model = train_band_unet(NAMES, patch=(16, 16, 16), features=(8, 16, 32), hu_step=HU_STEP, iterations=600,
                            lr=1e-2, train_shape_zyx=(40, 128, 128), path=root / "model")
    hu, truth = band_phantom(SHAPE, len(NAMES) + 1, hu_step=HU_STEP, seed=7)
    return root, model, _write(root / "ct.nii.gz", hu), truth


def _run(model, image, roi, fast_roi):
    p = make_predictor(model, torch.device("cpu"), fast_roi=fast_roi)
    p.allow_tqdm = False
    p.roi_labels = roi
    seg = p.predict_case([str(image)]).segmentation
    return keep_classes(seg, {str(k): k for k in roi}), p


def test_fast_roi_equals_the_full_run_with_fewer_windows(case):
    root, model, image, truth = case
    roi = [1, 4]  # liver and kidney_right
    full, p_full = _run(model, image, roi, fast_roi=False)
    fast, p_fast = _run(model, image, roi, fast_roi=True)
    a, b = full == 1, truth == 1  # the model was trained: its liver is where the phantom's is
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85
    assert p_fast.roi_fallback is None and p_fast.roi_box_used is not None
    for k in roi:  # the full run's ROI voxels up to the window grid (module doc of fast_roi)
        a, b = full == k, fast == k
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99, k
    assert p_fast.windows_run + p_fast.coarse_windows < p_full.windows_run
    assert p_fast.full_windows == p_full.windows_run + p_full.windows_skipped
    box = p_fast.roi_box_used  # the crop: smaller than the image, and every ROI voxel of the full run inside it
    assert np.prod([b.stop - b.start for b in box]) < full.size
    inside = np.zeros(full.shape, bool)
    inside[box] = True
    assert not np.isin(full[~inside], roi).any()


def test_context_widens_the_crop_and_both_agree_with_the_full_run(case):
    """Unit: one phantom case, ROI liver + kidney_right. The default crop (margin only) is no larger than the
    one grown by half a patch of context, and both agree with the full run."""
    _, model, image, _ = case
    roi = [1, 4]
    full, _ = _run(model, image, roi, fast_roi=False)
    boxes = {}
    for context in (0.0, 0.5):
        p = make_predictor(model, torch.device("cpu"), fast_roi=True)
        p.allow_tqdm, p.roi_labels, p.context_patches = False, roi, context
        fast = keep_classes(p.predict_case([str(image)]).segmentation, {str(k): k for k in roi})
        assert p.roi_fallback is None
        boxes[context] = p.roi_box_used
        for k in roi:
            a, b = full == k, fast == k
            assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99, (context, k)
    for narrow, wide in zip(boxes[0.0], boxes[0.5]):
        assert wide.start <= narrow.start and narrow.stop <= wide.stop
    assert boxes[0.0] != boxes[0.5]
    with pytest.raises(ValueError, match="context_patches"):
        FastRoiPredictor(context_patches=-1.0)


def test_no_roi_class_in_the_coarse_pass_runs_the_full_window(case):
    root, model, _, _ = case
    hu = np.full(SHAPE, -1000, np.int16)  # air: no organ
    hu[:, 72:88, 72:88] = -100  # a column of fat
    image = _write(root / "no_organs.nii.gz", hu)
    full, p_full = _run(model, image, [1, 4], fast_roi=False)
    fast, p_fast = _run(model, image, [1, 4], fast_roi=True)
    assert p_fast.roi_fallback == "the coarse pass found none of the ROI classes"
    assert p_fast.windows_run == p_full.windows_run and np.array_equal(fast, full)


def test_an_organ_cut_short_by_the_coarse_box_runs_the_full_window(case, monkeypatch):
    root, model, image, _ = case
    full, _ = _run(model, image, [1], fast_roi=False)
    z = np.nonzero(full == 1)[0]
    cut = (int(z.min()) + int(z.max())) // 2  # a box ending in the middle of the liver
    real = FastRoiPredictor.coarse_roi_box
    monkeypatch.setattr(FastRoiPredictor, "coarse_roi_box",
                        lambda self, *a: (slice(0, cut), *real(self, *a)[1:]))
    fast, p = _run(model, image, [1], fast_roi=True)
    assert p.roi_fallback == "the ROI reaches the edge of the crop along axis 0"
    assert np.array_equal(fast, full)


def test_crop_properties_put_the_crop_where_it_lies_in_the_image():
    img = sitk.Image(10, 20, 30, sitk.sitkInt16)  # x, y, z
    img.SetSpacing((0.7, 1.1, 2.5))
    img.SetOrigin((-12.0, 40.5, 3.25))
    img.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    props = {"sitk_stuff": {"spacing": img.GetSpacing(), "origin": img.GetOrigin(),
                            "direction": img.GetDirection()}, "spacing": [2.5, 1.1, 0.7]}
    box = (slice(4, 20), slice(3, 9), slice(7, 10))  # reader order: z, y, x
    crop = crop_properties(props, box)["sitk_stuff"]
    assert np.allclose(crop["origin"], img.TransformIndexToPhysicalPoint((7, 3, 4)))
    assert crop["direction"] == props["sitk_stuff"]["direction"] and props["sitk_stuff"]["origin"] == img.GetOrigin()


def test_an_oblique_input_with_an_origin_gives_the_full_run_labels_in_its_geometry(case, tmp_path):
    root, model, _, _ = case
    hu, _ = band_phantom(SHAPE, len(NAMES) + 1, hu_step=HU_STEP, seed=7)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0)
    image = _write(tmp_path / "oblique.nii.gz", hu, origin=(-120.5, 33.0, 410.25), direction=direction)
    written = {}
    for full in (False, True):
        [f] = predict(image, tmp_path / str(full), model, roi_subset=["liver", "kidney_right"], roi_full=full)
        written[full] = sitk.ReadImage(str(f))
    ref = sitk.ReadImage(str(image))
    for img in written.values():
        assert img.GetSize() == ref.GetSize() and np.allclose(img.GetOrigin(), ref.GetOrigin())
        assert np.allclose(img.GetDirection(), ref.GetDirection()) and np.allclose(img.GetSpacing(), ref.GetSpacing())
    fast, full = (sitk.GetArrayFromImage(written[k]) for k in (False, True))
    for k in (1, 4):
        a, b = full == k, fast == k
        assert a.sum() > 100 and 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99, k


def test_predict_writes_the_same_files_fast_or_full(case, tmp_path):
    root, model, image, _ = case
    outs = {}
    for full in (False, True):
        out = tmp_path / ("full" if full else "fast")
        [f] = predict(image, out, model, per_class=True, roi_subset=["liver", "kidney_right"], roi_full=full)
        outs[full] = (sorted(p.relative_to(out).as_posix() for p in out.rglob("*")),
                      sitk.GetArrayFromImage(sitk.ReadImage(str(f))), (out / "dataset.json").read_text())
    assert outs[False][0] == outs[True][0] and "ct/liver.nii.gz" in outs[False][0]
    assert outs[False][2] == outs[True][2]
    for k in (1, 4):
        a, b = outs[False][1] == k, outs[True][1] == k
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99, k


def test_bad_roi_arguments_are_one_line(case, tmp_path, capsys, monkeypatch):
    root, model, image, _ = case
    torch.save({"network_weights": model.state_dict, "trainer_name": model.trainer_name,
                "init_args": {"plans": model.plans, "configuration": model.configuration,
                              "dataset_json": model.dataset_json},
                "inference_allowed_mirroring_axes": model.mirror_axes}, tmp_path / "m.pth")
    monkeypatch.setenv("SUPREM_ZOO", str(tmp_path / "zoo"))
    base = ["-i", str(image), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "m.pth"), "--device", "cpu"]
    assert predict_cli.main([*base, "--roi-subset", "liver,unicorn"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unicorn" in err and "not a class of this model" in err
    assert predict_cli.main([*base, "--roi-full"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--roi-full needs --roi-subset" in err
    assert not (tmp_path / "o").exists()
