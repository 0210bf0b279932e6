"""Data you can trust: CHAOS 1-bit masks, FLARE23 as shipped, partial classes, present = annotated,
near-duplicate scans across sources found by image fingerprints."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from helpers.conversion_replicas import (lps, masks, phantom, read_dataset, read_label, sitk_image, source_label, write,
                                 write_dicom_series)
from dataset_conversion.duplicates import SearchStats, group_duplicates
from dataset_conversion.errors import ConversionError
from dataset_conversion.merge import merge
from dataset_conversion.runner import convert
from dataset_conversion.sources.lits import LiTSConverter
from dataset_conversion.thumbnail import Fingerprint
from suprem_nnunet.labels.sources import FLARE22

LITS = {1: "liver", 2: "liver_tumor"}
CTORG_SPEC = {1: "liver", 2: "bladder", 3: ("lung_left", "lung_right"), 4: ("kidney_left", "kidney_right"),
              5: "bone", 6: "brain"}


def go(src, root, raw, did, **kw):
    return convert(src, root, did, "T", raw_root=raw, progress=False, **kw)


# ------------------------------------------------------------------------------------------ CHAOS
@pytest.mark.parametrize("kind", ["1-bit", "0/1"])
def test_chaos_accepts_one_bit_and_zero_one_masks(tmp_path, kind):
    ph = phantom(93, "LPS", shape=(24, 20, 16), spacing=(14.0, 14.0, 15.0))
    case = tmp_path / "in/Train_Sets/CT/1"
    files = write_dicom_series(case / "DICOM_anon", ph, names=lambda i: f"i{i:04d},0000b.dcm")
    liver = masks(ph)["liver"]
    (case / "Ground").mkdir()
    for i in range(len(files)):
        m = liver[i]
        im = Image.fromarray(m.astype(bool)) if kind == "1-bit" else Image.fromarray(m.astype(np.uint8))
        im.save(case / "Ground" / f"liver_GT_{i:03d}.png")
    assert Image.open(case / "Ground/liver_GT_000.png").mode == ("1" if kind == "1-bit" else "L")
    go("chaos_ct", tmp_path / "in", tmp_path / "raw", 1)
    lab, _ = read_label(tmp_path / "raw/Dataset001_T", "chaos_1")
    assert np.array_equal(lab == 1, lps(liver.astype(np.uint8), ph).astype(bool)) and liver.any()


# ------------------------------------------------------------------------------------------ FLARE23
def test_flare23_shipped_folders_and_partial_lesions(tmp_path):
    ph1, ph2 = phantom(42, "RAS"), phantom(44, "RAS")
    spec = {**{k: v for k, v in FLARE22.items() if v == "liver"}, 14: ("liver_tumor",)}
    write(tmp_path / "in/imagesTr2200/FLARE23_0001_0000.nii.gz", ph1.image, ph1)
    write(tmp_path / "in/labelsTr2200/FLARE23_0001.nii.gz", source_label(ph1, spec), ph1)
    write(tmp_path / "in/unlabeledTr1800/FLARE23_2201.nii.gz", ph2.image, ph2)
    write(tmp_path / "in/unlabeledTr1800/FLARE23_2202_0000.nii.gz", ph2.image, ph2)
    rep = go("flare23", tmp_path / "in", tmp_path / "raw", 1)
    folder = tmp_path / "raw/Dataset001_T"
    dj, ann = read_dataset(folder)
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["flare23_2201_0000.nii.gz",
                                                                       "flare23_2202_0000.nii.gz"]
    assert ann == {"flare23_0001": ["liver"]}  # the lesion class is present but partial, not annotated
    lab, _ = read_label(folder, "flare23_0001")
    assert (lab == dj["labels"]["liver_tumor"]).any()
    assert "liver_tumor" in dj["partial_classes"]["flare23_0001"]
    report = json.loads((folder / "conversion_report.json").read_text())
    assert "liver_tumor" in report["partial_classes"]["classes"] and "subset" in report["partial_classes"]["note"]
    assert "partial (positive-only" in (folder / "conversion_report.txt").read_text()
    assert rep.cases[0]["partial"] == report["cases"][0]["partial"]


# ------------------------------------------------------------------------------ present = annotated
def test_present_class_not_annotated_is_a_one_line_error(tmp_path, monkeypatch):
    ph = phantom(100, "RAS")
    write(tmp_path / "in/volume-0.nii.gz", ph.image, ph)
    write(tmp_path / "in/segmentation-0.nii.gz", source_label(ph, LITS), ph)
    go("lits", tmp_path / "in", tmp_path / "raw", 1)  # fine as it is
    # a merge input whose annotated_classes.json forgets a class its label map holds
    ann_file = tmp_path / "raw/Dataset001_T/annotated_classes.json"
    ann_file.write_text(json.dumps({"lits_0": ["liver"]}))
    with pytest.raises(ConversionError, match=r"lits_0.nii.gz: class 'liver_tumor' is present in the label map "
                                              r"of case lits_0 but not among its annotated classes"):
        merge([1], 5, raw_root=tmp_path / "raw", progress=False)
    # a converter that forgets one
    monkeypatch.setattr(LiTSConverter, "annotated", lambda self, case, src, out: ["liver"])
    with pytest.raises(ConversionError, match=r"segmentation-0.nii.gz: class 'liver_tumor' is present") as e:
        go("lits", tmp_path / "in", tmp_path / "raw", 2)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------- near-duplicates
def _variants(ph):
    """The same scan stored four other ways: float32, voxel data flipped (header 'corrected'),
    header axis flip (same physical image) and a corrected slice spacing."""
    base = sitk_image(ph.image, ph)
    f32 = sitk_image(ph.image.astype(np.float32), ph)
    data_flip = sitk_image(np.ascontiguousarray(ph.image[::-1, :, ::-1]), ph)
    header_flip = sitk.Flip(base, [True, False, True])
    respaced = sitk_image(ph.image, ph)
    respaced.SetSpacing([ph.spacing[0], ph.spacing[1], ph.spacing[2] / 2])
    return base, [f32, data_flip, header_flip, respaced]


def test_fingerprint_groups_copies_not_other_patients():
    ph = phantom(7, "RAS")
    base, copies = _variants(ph)
    others = [sitk_image(phantom(s, "RAS").image, phantom(s, "RAS")) for s in (8, 9, 10, 11)]  # same shape
    fps = [Fingerprint.of(im) for im in [base, *copies, *others]]
    groups = group_duplicates(fps)
    assert len(groups) == 1 and groups[0].kept == 0
    assert sorted(m for m, _, _ in groups[0].others) == [1, 2, 3, 4]
    flips = {m: fl for m, _, fl in groups[0].others}
    assert flips[2] == (True, False, True) and flips[1] == flips[3] == flips[4] == (False, False, False)


def test_fingerprint_search_scales_with_buckets():
    """300 small volumes of varied grids, 10 planted copies: found exactly, few comparisons."""
    rng = np.random.default_rng(0)
    fps, planted = [], {}
    t0 = time.perf_counter()
    for i in range(300):
        shape = (int(rng.integers(16, 33)), int(rng.integers(16, 33)), int(rng.integers(8, 33)))
        fov = (rng.uniform(300, 420), rng.uniform(220, 300), rng.uniform(200, 450))
        ph = phantom(1000 + i, "LPS", shape=shape, spacing=tuple(f / n for f, n in zip(fov, shape)))
        if i % 30 == 29:  # a float32 copy with a corrected slice spacing of the case before
            img = sitk_image(prev.image.astype(np.float32), prev)
            img.SetSpacing([prev.spacing[0], prev.spacing[1], prev.spacing[2] * 2])
            planted[i - 1] = i
        else:
            img = sitk_image(ph.image, ph)
        prev = ph
        fps.append(Fingerprint.of(img))
    t1 = time.perf_counter()
    stats = SearchStats()
    groups = group_duplicates(fps, stats)
    t2 = time.perf_counter()
    assert {g.kept: [m for m, _, _ in g.others] for g in groups} == {k: [v] for k, v in planted.items()}
    all_pairs = 300 * 299 // 2
    assert stats.coarse_pairs < all_pairs / 4, stats  # bucketing: a fraction of all pairs
    assert t2 - t1 < 20 and t1 - t0 < 60  # loose sanity bounds (measured: see the README)
    print(f"fingerprints {t1 - t0:.2f}s, search {t2 - t1:.3f}s, {stats}")


def test_merge_finds_near_duplicates_and_merges_agreeing_labels(tmp_path):
    lits, ctorg = tmp_path / "lits", tmp_path / "ctorg"
    phs = {i: phantom(300 + i, "RAS") for i in range(4)}
    for i, ph in phs.items():
        write(lits / f"volume-{i}.nii.gz", ph.image, ph)
        write(lits / f"segmentation-{i}.nii.gz", source_label(ph, LITS), ph)
    lab = {i: source_label(ph, CTORG_SPEC).astype(np.float32) for i, ph in phs.items()}
    # 0: float32 copy; 1: voxel data flipped along z; 2: slice spacing corrected, liver drawn badly
    write(ctorg / "volume-0.nii.gz", phs[0].image.astype(np.float32), phs[0])
    write(ctorg / "labels-0.nii.gz", lab[0], phs[0])
    write(ctorg / "volume-1.nii.gz", np.ascontiguousarray(phs[1].image[::-1]).astype(np.float32), phs[1])
    write(ctorg / "labels-1.nii.gz", np.ascontiguousarray(lab[1][::-1]), phs[1])
    bad = lab[2].copy()
    bad[bad == 1] = 0
    bad[:, :6][bad[:, :6] == 0] = 1  # a 'liver' slab nowhere near the liver
    for name, arr in (("volume-2", phs[2].image.astype(np.float32)), ("labels-2", bad)):
        img = sitk_image(arr, phs[2])
        img.SetSpacing([phs[2].spacing[0], phs[2].spacing[1], phs[2].spacing[2] / 2])
        sitk.WriteImage(img, str(ctorg / f"{name}.nii.gz"))
    other = phantom(399, "RAS")  # 3: another patient, same grid
    write(ctorg / "volume-3.nii.gz", other.image.astype(np.float32), other)
    write(ctorg / "labels-3.nii.gz", source_label(other, CTORG_SPEC).astype(np.float32), other)
    raw = tmp_path / "raw"
    go("lits", lits, raw, 1)
    go("ctorg", ctorg, raw, 2)
    rep = merge([1, 2], 9, "M", raw_root=raw, progress=False)
    folder = raw / "Dataset009_M"
    dj, ann = read_dataset(folder)
    assert sorted(dj["case_sources"]) == ["ctorg_3", "lits_0", "lits_1", "lits_2", "lits_3"]
    groups = {g["kept"]: g["members"] for g in rep.duplicates}
    assert {k: [m["case"] for m in ms] for k, ms in groups.items()} == {
        "lits_0": ["ctorg_0"], "lits_1": ["ctorg_1"], "lits_2": ["ctorg_2"]}
    assert groups["lits_1"][0]["flip"] == [True, False, False]
    assert groups["lits_0"][0]["labels"] == "merged" and groups["lits_2"][0]["labels"] == "disagree"
    assert groups["lits_2"][0]["dice"]["liver"] < 0.9
    ctorg_classes = {"liver", "bladder", "lung_left", "lung_right", "kidney_left", "kidney_right", "bone", "brain"}
    assert set(ann["lits_0"]) == set(ann["lits_1"]) == ctorg_classes | {"liver_tumor"}
    assert ann["lits_2"] == ["liver", "liver_tumor"]
    ids = dj["labels"]
    for i in (0, 1):  # the duplicate's classes landed on the kept scan's own voxels
        got, _ = read_label(folder, f"lits_{i}")
        m = masks(phs[i])
        for name in ("kidney_left", "bladder", "liver_tumor", "liver"):
            want = lps(m[name].astype(np.uint8), phs[i]).astype(bool)
            assert np.array_equal(got == ids[name], want), (i, name)
    report = json.loads((folder / "conversion_report.json").read_text())
    assert len(report["duplicates"]) == 3
    txt = (folder / "conversion_report.txt").read_text()
    assert "dropped ctorg_2" in txt and "labels disagree (liver Dice" in txt
    assert "voxels flipped along z" in {e["case"]: e["reason"] for e in rep.excluded}["ctorg_1"]
