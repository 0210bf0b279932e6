"""The paper's direct-inference protocol on synthetic CT: geometry, thresholds, components, labels."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from suprem_nnunet.labels import atlas_id
from suprem_nnunet.zoo.predict import compose_label_map, preprocess_ct, predict_released
from suprem_nnunet.zoo.release import load_released
from suprem_nnunet.zoo.layouts import release_like_checkpoint


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def hu_to_unit(hu: float) -> float:
    return (hu + 175.0) / 425.0


class IntensityModel(nn.Module):
    """Logits decided by the preprocessed intensity: liver 0.55-1, liver_tumor > 0.9, spleen 0.3-0.5."""

    class_names = ["liver", "liver_tumor", "spleen"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        liver = x > 0.55
        tumor = x > 0.9
        spleen = (x > 0.3) & (x < 0.5)
        return 20.0 * (torch.cat([liver, tumor, spleen], 1).float() - 0.5)


def synthetic_ct():
    """(image, masks) on an anisotropic, non-RAS grid; masks are voxel boxes in array (z, y, x)."""
    arr = np.full((30, 36, 40), -1000.0, np.float32)  # z, y, x
    boxes = {"liver": (slice(5, 25), slice(4, 24), slice(4, 24)),
             "tumor_a": (slice(8, 12), slice(8, 12), slice(8, 12)),
             "tumor_b": (slice(18, 22), slice(16, 20), slice(16, 20)),
             "spleen_big": (slice(6, 20), slice(26, 34), slice(28, 38)),
             "spleen_small": (slice(24, 27), slice(2, 5), slice(34, 37))}
    arr[boxes["liver"]] = 100.0
    arr[boxes["tumor_a"]] = 240.0
    arr[boxes["tumor_b"]] = 240.0
    arr[boxes["spleen_big"]] = 0.0
    arr[boxes["spleen_small"]] = 0.0
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.8, 2.0, 2.5))
    img.SetOrigin((-30.0, 12.0, 100.0))
    img.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))  # y flipped: not RAS, not LPS
    return img, boxes


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_preprocessing_is_ras_1p5mm_and_clipped_unit_range():
    img, _ = synthetic_ct()
    vol, grid = preprocess_ct(img)
    assert grid.GetSpacing() == (1.5, 1.5, 1.5)
    assert np.allclose(np.array(grid.GetDirection()).reshape(3, 3), np.diag([-1, -1, 1]))  # RAS in ITK terms
    assert vol.shape == tuple(int(round(n * s / 1.5)) for n, s in zip(img.GetSize(), img.GetSpacing()))
    assert vol.min() == 0.0 and vol.max() == pytest.approx(hu_to_unit(240.0), abs=1e-4)


def test_predict_released_protocol_on_synthetic_ct(tmp_path):
    img, boxes = synthetic_ct()
    src, out = tmp_path / "ct.nii.gz", tmp_path / "pred" / "case.nii.gz"
    sitk.WriteImage(img, str(src))
    model = IntensityModel()
    mapping = predict_released(model, src, out, class_names=model.class_names, roi_size=(32, 32, 32))
    assert mapping == {"liver": atlas_id("liver"), "liver_tumor": atlas_id("liver_tumor"),
                       "spleen": atlas_id("spleen")}

    pred_img = sitk.ReadImage(str(out))
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(pred_img, get)(), getattr(img, get)())
    pred = sitk.GetArrayFromImage(pred_img)
    assert set(np.unique(pred)) <= {0, 5, 8, 27}

    def box(*names):
        m = np.zeros(pred.shape, bool)
        for n in names:
            m[boxes[n]] = True
        return m

    tumors = box("tumor_a", "tumor_b")
    liver_only = box("liver") & ~tumors
    assert dice(pred == 27, tumors) > 0.6  # both lesions kept (no largest-component for tumours)
    for lesion in ("tumor_a", "tumor_b"):
        assert (pred[boxes[lesion]] == 27).mean() > 0.5
    # sharp synthetic edges through linear resampling lose about one voxel per side: geometry is
    # checked by the centroid (a flipped or shifted axis would move it by many voxels)
    liver = (pred == 5) | (pred == 27)
    assert dice(liver, box("liver")) > 0.85
    assert np.abs(np.argwhere(liver).mean(0) - np.argwhere(box("liver")).mean(0)).max() < 1.0
    assert dice(pred == 5, liver_only) > 0.85  # tumours painted over their organ
    assert dice(pred == 8, box("spleen_big")) > 0.8  # largest component of the organ ...
    assert np.abs(np.argwhere(pred == 8).mean(0) - np.argwhere(box("spleen_big")).mean(0)).max() < 1.0
    assert (pred[boxes["spleen_small"]] == 8).sum() == 0  # ... the small island removed
    sidecar = json.loads((tmp_path / "pred" / "case.json").read_text())
    assert sidecar["labels"]["liver_tumor"] == 27 and sidecar["protocol"]["overlap"] == 0.75

    predict_released(model, src, tmp_path / "keep.nii.gz", class_names=model.class_names,
                     roi_size=(32, 32, 32), keep_largest=False)
    kept = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "keep.nii.gz")))
    assert (kept[boxes["spleen_small"]] == 8).sum() > 0


def test_compose_label_map_paints_tumours_last():
    masks = np.zeros((2, 4, 4, 4), bool)
    masks[0] = True  # liver_tumor listed first ...
    masks[1, :2] = True
    labels, mapping = compose_label_map(masks, ["liver_tumor", "liver"])
    assert (labels == 27).all()  # ... still wins over the organ
    labels, _ = compose_label_map(masks[[1]], ["class_1"])
    assert set(np.unique(labels)) == {0, 1}


@pytest.mark.slow
def test_predict_released_with_tiny_release_weights(tmp_path):
    path = tmp_path / "supervised_suprem_unet_2100.pth"
    torch.save(release_like_checkpoint("unet", seed=2), path)
    model = load_released(path)
    img, _ = synthetic_ct()
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    mapping = predict_released(model, tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz", roi_size=(32, 32, 32),
                               overlap=0.5)
    assert len(mapping) == 32 and mapping["spleen"] == atlas_id("spleen") and mapping["aorta"] == 1
    seg = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    assert seg.GetSize() == img.GetSize() and np.allclose(seg.GetDirection(), img.GetDirection())
    assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, *mapping.values()}


def _roomy_ct(tmp_path):
    """synthetic_ct embedded in a larger field of air (x 120, y 100, z 50 voxels): room for a box around one organ."""
    img, boxes = synthetic_ct()
    arr = np.full((50, 100, 120), -1000.0, np.float32)
    arr[10:40, 30:66, 40:80] = sitk.GetArrayFromImage(img)
    big = sitk.GetImageFromArray(arr)
    big.SetSpacing(img.GetSpacing())
    big.SetOrigin(img.GetOrigin())
    big.SetDirection(img.GetDirection())
    sitk.WriteImage(big, str(tmp_path / "ct.nii.gz"))
    return tmp_path / "ct.nii.gz", {k: (slice(b[0].start + 10, b[0].stop + 10), slice(b[1].start + 30, b[1].stop + 30),
                                        slice(b[2].start + 40, b[2].stop + 40)) for k, b in boxes.items()}


def test_fast_roi_of_a_release_runs_windows_on_the_box_only_and_agrees_with_the_whole_grid(tmp_path):
    """Unit: one synthetic CT (n = 1 case), ROI = spleen. The fast ROI's labels equal the whole grid's for
    the ROI class (an intensity model: no context), with fewer windows."""
    src, boxes = _roomy_ct(tmp_path)
    model = IntensityModel()
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return model(x)

    kw = dict(class_names=model.class_names, roi_size=(32, 32, 32))
    predict_released(model, src, tmp_path / "full.nii.gz", runner=Counting(), **kw)
    full_windows = len(calls)
    calls.clear()
    predict_released(model, src, tmp_path / "roi.nii.gz", runner=Counting(), roi_names=["spleen"], **kw)
    full = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "full.nii.gz")))
    roi = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "roi.nii.gz")))
    spleen = atlas_id("spleen")
    assert (full == spleen).sum() > 500 and np.array_equal(full == spleen, roi == spleen)
    assert dice(roi == spleen, _mask(roi.shape, boxes["spleen_big"])) > 0.8
    side = json.loads((tmp_path / "roi.json").read_text())["protocol"]
    box = side["roi_box_xyz"]
    grid = preprocess_ct(sitk.ReadImage(str(src)))[0].shape
    assert box is not None and np.prod([b - a for a, b in box]) < 0.5 * np.prod(grid)
    assert len(calls) < full_windows  # coarse + box windows against the whole grid's
    assert side["network"] == {"backend": "torch"}
    given = tuple(slice(a, b) for a, b in box)  # the same box given (benchmarks): no coarse pass, same labels
    calls.clear()
    predict_released(model, src, tmp_path / "given.nii.gz", runner=Counting(), roi_names=["spleen"], roi_box=given,
                     **kw)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "given.nii.gz"))), roi)
    assert 0 < len(calls) < full_windows


def test_release_roi_benchmark_builds_its_ct_around_the_real_liver_and_spleen(tmp_path):
    """Unit: one WORD label map (real, manual). The benchmark's CT has the requested grid, its liver and
    spleen where the label map has them, and the box holds them; window counts follow MONAI's rule."""
    from helpers.paths import real_data
    from suprem_nnunet.benchmarks.release_roi import abdomen_ct, roi_grid_box, whole_grid_windows

    ct, labels = abdomen_ct(real_data("word_labels", "word_0014.nii.gz"), tmp_path, (1, 2), (80, 70, 60), 4.5)
    img = sitk.ReadImage(str(ct))
    assert img.GetSize() == (80, 70, 60) and img.GetSpacing() == (4.5, 4.5, 4.5)
    hu, lab = sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(labels)
    assert (lab == 1).sum() > 1000 and (lab == 2).sum() > 100 and (hu[lab == 1] == 60).all()
    grid = preprocess_ct(img)[1]
    box = roi_grid_box(labels, grid, (1, 2))
    on = sitk.GetArrayFromImage(sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    inside = np.zeros(on.shape[::-1], bool)
    inside[box] = True
    assert np.isin(on, (1, 2)).transpose(2, 1, 0)[~inside].sum() == 0
    assert whole_grid_windows((244, 202, 224), 0.75) == 8 * 6 * 7 and whole_grid_windows((90, 90, 90), 0.5) == 1


def _mask(shape, box):
    m = np.zeros(shape, bool)
    m[box] = True
    return m


def test_fast_roi_of_a_release_falls_back_to_the_whole_grid(tmp_path, monkeypatch, caplog):
    """Unit: one synthetic CT. No ROI class in the coarse pass, and a box that cuts the liver short: the
    whole grid runs (logged) and the labels equal the full run's."""
    import suprem_nnunet.zoo.predict as zp

    src, _ = _roomy_ct(tmp_path)
    model = IntensityModel()
    kw = dict(class_names=model.class_names, roi_size=(32, 32, 32))
    predict_released(model, src, tmp_path / "full.nii.gz", **kw)
    full = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "full.nii.gz")))

    real, coarse = zp.coarse_roi_box, []

    def no_spleen_when_coarse(*a, **k):
        coarse.append(True)
        try:
            return real(*a, **k)
        finally:
            coarse.clear()

    class NoSpleen(nn.Module):  # finds the spleen at full resolution only: none in the coarse pass
        def forward(self, x):
            out = model(x)
            if coarse:
                out[:, 2] = -10.0
            return out

    caplog.set_level("INFO", logger="suprem_nnunet.zoo.predict")
    monkeypatch.setattr(zp, "coarse_roi_box", no_spleen_when_coarse)
    predict_released(model, src, tmp_path / "none.nii.gz", runner=NoSpleen(), roi_names=["spleen"], **kw)
    assert "found none of spleen" in caplog.text
    assert json.loads((tmp_path / "none.json").read_text())["protocol"]["roi_box_xyz"] is None

    def short(*a, **k):  # the box ends in the middle of the liver
        box = real(*a, **k)
        return (slice(box[0].start, (box[0].start + box[0].stop) // 2), box[1], box[2])

    monkeypatch.setattr(zp, "coarse_roi_box", short)
    predict_released(model, src, tmp_path / "short.nii.gz", roi_names=["liver"], **kw)
    assert "the ROI reaches the edge of the box along axis x" in caplog.text
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "short.nii.gz"))), full)
