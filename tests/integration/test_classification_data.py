"""Sub-type phantoms, case_labels.csv reading/validation and the few-shot subset (no torch training)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk

from suprem_nnunet.classification.data import SUBTYPES, dataset_cases, match_images, read_case_labels
from suprem_nnunet.classification.train import stratified_subset
from suprem_nnunet.synth import PHANTOM_CLASSES, PhantomGenerator
from suprem_nnunet.synth.dataset import make_subtype_dataset


def _digest(ph) -> str:
    h = hashlib.sha256(ph.image.tobytes())
    for k in PHANTOM_CLASSES:
        h.update(np.packbits(ph.masks[k]).tobytes())
    return h.hexdigest()[:16]


def test_legacy_phantoms_unchanged():
    """Phantoms without sub-type lesions keep their voxels: digests of the generator without the
    sub-type lesion code (commit 0bcceb1)."""
    expected = {0: "aeb59542e6a6c689", 7: "6f984699214ce518", 123: "8fbdf1fd1c39bdd1"}
    for seed, want in expected.items():
        ph = PhantomGenerator(seed)((24, 20, 16), (12.0, 12.0, 14.0), "RAS", hu_offsets={"liver": -30.0})
        assert _digest(ph) == want, seed
        assert ph.pancreas_lesion is None


def test_subtype_lesions_follow_radiology():
    med = {}
    for sub in ("pdac", "cyst", "pannet"):
        vals, rel = [], []
        for seed in range(3):
            ph = PhantomGenerator(seed)((48, 48, 48), (5, 5, 5), noise_hu=0, pancreas_lesion=sub, difficulty=0.0)
            m = ph.masks["pancreas_tumor"]
            assert m.sum() >= 5 and ph.hosts["pancreas_tumor"] == "pancreas"
            assert not (m & ph.masks["pancreas"]).any()  # cut out of the organ
            vals.append(float(np.median(ph.image[m])))
            rel.append(vals[-1] - float(np.median(ph.image[ph.masks["pancreas"]])))
        med[sub] = (np.mean(vals), np.mean(rel))
    assert -10 <= med["cyst"][0] <= 35  # near water
    assert -70 <= med["pdac"][1] <= -20  # hypo-attenuating
    assert 30 <= med["pannet"][1] <= 90  # hyper-enhancing
    # one seed: same anatomy whatever the sub-type; lesion-free draws no lesion
    a = PhantomGenerator(5)((32, 32, 32), (8, 8, 8), pancreas_lesion="none")
    b = PhantomGenerator(5)((32, 32, 32), (8, 8, 8), pancreas_lesion="pannet")
    assert not a.masks["pancreas_tumor"].any() and b.masks["pancreas_tumor"].any()
    assert np.array_equal(a.masks["liver"], b.masks["liver"])
    # difficulty 1: the sub-types are indistinguishable
    c = PhantomGenerator(5)((32, 32, 32), (8, 8, 8), pancreas_lesion="pdac", difficulty=1.0)
    d = PhantomGenerator(5)((32, 32, 32), (8, 8, 8), pancreas_lesion="cyst", difficulty=1.0)
    assert np.array_equal(c.image, d.image)
    with pytest.raises(ValueError, match="unknown pancreatic lesion sub-type 'ipmn'"):
        PhantomGenerator(5)((16, 16, 16), (8, 8, 8), pancreas_lesion="ipmn")
    with pytest.raises(ValueError, match=r"difficulty must be in \[0, 1\]"):
        PhantomGenerator(5)((16, 16, 16), (8, 8, 8), pancreas_lesion="pdac", difficulty=1.5)


def test_subtype_dataset_writes_labels_file(tmp_path):
    raw = make_subtype_dataset(970, "Sub", 8, 4, 0.5, shape=(24, 24, 24), spacing=(10, 10, 10), raw_root=tmp_path,
                               progress=False)
    labels = read_case_labels(raw / "case_labels.csv")
    assert len(labels) == 12
    train = [labels[f"sub_{i:03d}"] for i in range(8)]
    assert sorted(train) == sorted(list(SUBTYPES) * 2)  # balanced
    dj = json.loads((raw / "dataset.json").read_text())
    assert list(dj["labels"]) == ["background", "pancreas", "pdac", "pancreatic_cyst", "pannet"]
    case = next(c for c in sorted(labels)[:8] if labels[c] == "cyst")
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / f"{case}.nii.gz")))
    assert set(np.unique(lab)) <= {0, 1, 3} and (lab == 3).any()
    got_labels, images, segs = dataset_cases(raw)
    assert sorted(got_labels) == [f"sub_{i:03d}" for i in range(8)] and all(segs.values())


def _write(path, text):
    path.write_text(text)
    return path


def test_labels_file_problems_are_one_line(tmp_path):
    ok = _write(tmp_path / "ok.csv", "case,subtype,comment\na,PDAC,x\nb,pnet,\nc,Normal,\nd,pancreatic cyst,\n")
    assert read_case_labels(ok) == {"a": "pdac", "b": "pannet", "c": "none", "d": "cyst"}
    bad = _write(tmp_path / "bad.csv", "case,subtype\na,pdac\nb,ipmn\na,cyst\n")
    with pytest.raises(ValueError) as e:
        read_case_labels(bad)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(bad)) and "2 problem(s)" in msg
    assert "line 3: case 'b' has unknown sub-type 'ipmn'" in msg and "line 4: case 'a' is listed twice" in msg
    with pytest.raises(ValueError, match="needs the columns 'case' and 'subtype'"):
        read_case_labels(_write(tmp_path / "cols.csv", "id,label\na,pdac\n"))
    with pytest.raises(FileNotFoundError, match="no such case labels file"):
        read_case_labels(tmp_path / "absent.csv")
    images = tmp_path / "imagesTr"
    images.mkdir()
    for c in ("a", "b"):
        (images / f"{c}_0000.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError) as e:
        match_images(ok, read_case_labels(ok), [images])
    assert "\n" not in str(e.value) and str(e.value).startswith(str(ok))
    assert "case 'c' has no image in" in str(e.value) and "case 'd' has no image" in str(e.value)


def test_stratified_few_shot_subset():
    labels = {f"c{i:02d}": SUBTYPES[i % 4] if i < 20 else "none" for i in range(28)}  # none 12, others 5
    a = stratified_subset(labels, 8, seed=1)
    assert a == stratified_subset(labels, 8, seed=1) and a != stratified_subset(labels, 8, seed=2)
    counts = {k: sum(labels[c] == k for c in a) for k in SUBTYPES}
    assert len(a) == 8 and min(counts.values()) >= 1 and counts["none"] >= counts["pdac"]
    assert stratified_subset(labels, None) == sorted(labels)


def test_roi_patch_and_mask():
    from suprem_nnunet.classification.preprocess import crop_patch, mask_outside, roi_center, roi_mask

    vol = np.arange(1000, dtype=np.float32).reshape(1, 10, 10, 10)
    seg = np.zeros((10, 10, 10), np.int16)
    seg[1:3, 1:3, 1:3] = 1  # pancreas
    seg[8, 8, 8] = 7  # another organ, not in the ROI ids
    m = roi_mask(seg, {1})
    assert np.allclose(roi_center(m, seg.shape, "c"), [1.5, 1.5, 1.5])
    assert np.allclose(roi_center(roi_mask(seg * 0, {1}), seg.shape, "c"), [4.5, 4.5, 4.5])  # none: the centre
    assert np.array_equal(crop_patch(vol, [1.5, 1.5, 1.5], (4, 4, 4)), vol[:, :4, :4, :4])  # centre of 0..3
    p = crop_patch(vol + 10, [0.5, 0.5, 0.5], (4, 4, 4))  # reaches one voxel past the edge
    assert p[0, 0, 0, 0] == 10.0 and p[0, 1, 1, 1] == vol[0, 0, 0, 0] + 10 and p[0, 3, 3, 3] == vol[0, 2, 2, 2] + 10
    masked = mask_outside(vol, m, [-5.0], margin_mm=2.5, spacing=(2.5, 5.0, 5.0))  # 1 voxel along x, 0 along y, z
    assert masked[0, 3, 2, 2] == vol[0, 3, 2, 2] and masked[0, 2, 3, 2] == -5.0
    assert masked[0, 4, 2, 2] == -5.0 == masked[0, 8, 8, 8] and masked[0, 1, 1, 1] == vol[0, 1, 1, 1]
    assert np.array_equal(mask_outside(vol, m, [-5.0]) != -5.0, m[None])  # default 0 mm: the ROI alone
    assert crop_patch(vol, [0.5, 0.5, 0.5], (4, 4, 4), fill=[-7.0])[0, 0, 0, 0] == -7.0  # padding takes the fill


def test_classification_window_and_fill():
    """CT is windowed to [-200, 300] HU -> [0, 1] (fat, water, soft tissue and enhancement apart), and
    outside the ROI every voxel takes the ROI's median."""
    from suprem_nnunet.classification.preprocess import CLASSIFICATION_WINDOW_HU, fill_values, window_ct

    hu = np.array([-1000.0, -100.0, 10.0, 50.0, 150.0, 900.0])
    w = window_ct(hu)
    assert CLASSIFICATION_WINDOW_HU == (-200.0, 300.0)
    assert np.allclose(w, [0.0, 0.2, 0.42, 0.5, 0.7, 1.0]) and len(set(np.round(w[1:5], 3))) == 4
    vol = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    mask = np.zeros((2, 2, 2), bool)
    mask[0, 0] = True  # values 0 and 1
    assert fill_values(vol, mask).tolist() == [0.5] and fill_values(vol, None).tolist() == [0.0]
