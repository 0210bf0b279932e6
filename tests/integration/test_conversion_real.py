"""Converters on real files from ../shared/data/real/ (skipped where that folder is missing)."""
from __future__ import annotations


import numpy as np
import pytest
import SimpleITK as sitk

from helpers.conversion_replicas import REAL, centroid_x, read_dataset
from dataset_conversion.errors import BadInputError
from dataset_conversion.imageio import align_to, label_array, read_dicom_series, read_image, to_lps
from dataset_conversion.registry import create
from dataset_conversion.runner import convert
from dataset_conversion.sides import Geometry
from suprem_nnunet.labels import TOTALSEG_V2, totalseg_v2_id_to_unified
from suprem_nnunet.labels.sources import WORD


def need(*parts):
    p = REAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test data {p} not found (expected ../shared/data/real/ next to the repository)")
    return p


def shrink(img: sitk.Image, step: int) -> sitk.Image:
    """Every `step`-th voxel along the two largest axes; direction and origin kept (voxel 0 stays)."""
    size = np.array(img.GetSize())
    steps = [step if n >= 256 else 1 for n in size]
    arr = sitk.GetArrayFromImage(img)[::steps[2], ::steps[1], ::steps[0]]
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    out.SetOrigin(img.GetOrigin())
    out.SetDirection(img.GetDirection())
    out.SetSpacing([s * k for s, k in zip(img.GetSpacing(), steps)])
    return out


@pytest.mark.parametrize("orientation", ["as stored (LPS)", "flipped to RAS"])
def test_word_real_labels_left_right_by_patient_side(orientation):
    src_img = shrink(read_image(need("word_labels", "word_0014.nii.gz")), 2)
    assert np.allclose(src_img.GetDirection(), np.eye(3).flatten())  # WORD is stored LPS
    if orientation != "as stored (LPS)":
        src_img = sitk.DICOMOrient(src_img, "RAS")  # same patient, voxels stored right-to-left
    conv = create("word")
    lab = to_lps(src_img)
    src = label_array(lab, "word_0014", list(WORD))
    assert set(np.unique(src)) == set(range(17))
    out = conv.mapper.apply(src, Geometry.of(lab))
    ids = {n: i + 1 for i, n in enumerate(conv.classes)}
    # real ids land on their unified names, voxel for voxel
    for sid, name in ((1, "liver"), (2, "spleen"), (3, "kidney_left"), (4, "kidney_right"), (11, "intestine"),
                      (15, "femur_left"), (16, "femur_right")):
        assert np.array_equal(out == ids[{"head_of_femur_left": "femur_left"}.get(name, name)], src == sid)
    # WORD's own left kidney lies at the patient's left (+x in LPS): the file really is LPS
    x = {n: centroid_x(out == ids[n], lab) for n in ("kidney_left", "kidney_right", "spleen", "liver",
                                                      "adrenal_gland_left", "adrenal_gland_right")}
    assert x["kidney_left"] > x["kidney_right"] and x["spleen"] > x["liver"]
    # the one adrenal label became a left and a right gland, each next to the kidney of its side
    adrenal = src == 12
    assert np.array_equal((out == ids["adrenal_gland_left"]) | (out == ids["adrenal_gland_right"]), adrenal)
    assert x["adrenal_gland_left"] > x["adrenal_gland_right"]
    assert abs(x["adrenal_gland_left"] - x["kidney_left"]) < abs(x["adrenal_gland_left"] - x["kidney_right"])
    assert abs(x["adrenal_gland_right"] - x["kidney_right"]) < abs(x["adrenal_gland_right"] - x["kidney_left"])


def test_kits19_real_label_axis_quirk(tmp_path):
    seg = shrink(read_image(need("kits19", "case_00004", "segmentation.nii.gz")), 4)
    assert seg.GetSize()[0] == 64 and sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        seg.GetDirection()) == "IPL"  # axes stored (z, y, x)
    case = tmp_path / "kits/data/case_00004"
    case.mkdir(parents=True)
    sitk.WriteImage(seg, str(case / "segmentation.nii.gz"))
    ct = sitk.Image(seg.GetSize(), sitk.sitkInt16)
    ct.CopyInformation(seg)
    ct = ct - 1000  # air: the side split then falls back to the labelled anatomy
    sitk.WriteImage(ct, str(case / "imaging.nii.gz"))
    convert("kits19", tmp_path / "kits", 1, "K", raw_root=tmp_path / "raw", progress=False)
    folder = tmp_path / "raw/Dataset001_K"
    out_img = sitk.ReadImage(str(folder / "labelsTr/kits19_00004.nii.gz"))
    out = sitk.GetArrayFromImage(out_img)
    # geometry: (x, y, z) axes, LPS, spacing permuted with the axes, the same voxels in world space
    assert out_img.GetSize() == (seg.GetSize()[2], seg.GetSize()[1], seg.GetSize()[0])
    assert np.allclose(out_img.GetDirection(), np.eye(3).flatten())
    assert np.allclose(out_img.GetSpacing(), seg.GetSpacing()[::-1])
    src = sitk.GetArrayFromImage(seg)
    dj, ann = read_dataset(folder)
    ids = dj["labels"]
    for value in (2, 1):  # a voxel keeps its world position: look it up through the headers
        k, j, i = np.argwhere(src == value)[int((src == value).sum()) // 2]
        oi = out_img.TransformPhysicalPointToIndex(seg.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
        got = out[oi[2], oi[1], oi[0]]
        assert got == ids["kidney_tumor"] if value == 2 else got in (ids["kidney_left"], ids["kidney_right"])
    assert (out == ids["kidney_tumor"]).sum() == (src == 2).sum()
    left, right = out == ids["kidney_left"], out == ids["kidney_right"]
    assert left.sum() + right.sum() == (src == 1).sum() and left.sum() > 0 and right.sum() > 0
    assert centroid_x(left, out_img) > centroid_x(right, out_img)  # patient left is +x
    assert ann["kits19_00004"] == ["kidney_left", "kidney_right", "kidney_tumor"]


def test_totalsegmentator_real_per_class_folder(tmp_path):
    base = need("totalseg_example_sm")
    case = tmp_path / "ts/s0001"
    case.mkdir(parents=True)
    (case / "ct.nii.gz").symlink_to(base / "ct.nii.gz")
    (case / "segmentations").symlink_to(base / "segmentations")
    convert("totalseg_v2", tmp_path / "ts", 1, "TS", raw_root=tmp_path / "raw", progress=False)
    folder = tmp_path / "raw/Dataset001_TS"
    dj, ann = read_dataset(folder)
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr/tsv2_s0001.nii.gz")))
    ref = sitk.GetArrayFromImage(to_lps(read_image(base / "seg_total_v2.nii.gz")))
    unified = totalseg_v2_id_to_unified()
    by_name = {}
    for i, n in enumerate(TOTALSEG_V2, start=1):
        by_name.setdefault(unified[i], []).append(n)
    checked = 0
    for name, uid in dj["labels"].items():
        if name == "background":
            continue
        # 1) exactly the union of this class's mask files (lobes -> lung side, cysts -> kidney_cyst)
        files = [sitk.GetArrayFromImage(to_lps(read_image(base / "segmentations" / f"{n}.nii.gz"))) > 0
                 for n in by_name[name]]
        assert np.array_equal(out == uid, np.any(files, 0)), name
        # 2) the same structure as TotalSegmentator's own multi-label map under its v2 id(s). The
        # mask folder comes from TotalSegmentator's 'fast' model and seg_total_v2 from the full
        # one, so they agree closely rather than voxel for voxel.
        want = np.isin(ref, [i for i, n in unified.items() if n == name])
        if want.sum() >= 500:
            dice = 2 * np.sum((out == uid) & want) / (np.sum(out == uid) + want.sum())
            assert dice > 0.8, f"{name}: Dice {dice:.2f} against seg_total_v2"
            checked += 1
    assert checked >= 15
    assert ann["tsv2_s0001"] == sorted(n for n in dj["labels"] if n != "background")


def test_real_dicom_series_with_nrrd_masks(tmp_path):
    dcm = need("dcmqi_ct3slice", "dicom")
    img, files = read_dicom_series(dcm)
    assert [f.name for f in files] == ["03.dcm", "02.dcm", "01.dcm"]  # inferior to superior
    assert img.GetSize() == (512, 512, 3)
    for nrrd, values in (("liver_seg.nrrd", [1]), ("liver_spine_seg.nrrd", [1, 2])):
        p = need("dcmqi_ct3slice", nrrd)
        lab = align_to(read_image(p), img, p, dcm)
        arr = label_array(lab, p, values)
        assert set(np.unique(arr)) == {0, *values}
    # the same series as a Pancreas-CT case, the NRRD liver mask as its label
    pat = tmp_path / "pct/PANCREAS_0003/study/series"
    pat.mkdir(parents=True)
    for f in files:
        (pat / f.name).symlink_to(f)
    sitk.WriteImage(read_image(need("dcmqi_ct3slice", "liver_seg.nrrd")), str(tmp_path / "pct/label0003.nii.gz"))
    convert("pancreas_ct", tmp_path / "pct", 1, "P", raw_root=tmp_path / "raw", progress=False)
    out = sitk.ReadImage(str(tmp_path / "raw/Dataset001_P/imagesTr/pancreasct_0003_0000.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(img))
    assert np.allclose(out.GetOrigin(), img.GetOrigin(), atol=1e-3)
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "raw/Dataset001_P/labelsTr/pancreasct_0003.nii.gz")))
    assert np.array_equal(lab, sitk.GetArrayFromImage(read_image(need("dcmqi_ct3slice", "liver_seg.nrrd"))))
    # a lost middle slice is reported, naming the series folder
    (pat / "02.dcm").unlink()
    with pytest.raises(BadInputError, match=r"PANCREAS_0003: missing slice: InstanceNumber jumps from 3 to 1 between 03.dcm and 01.dcm"):
        convert("pancreas_ct", tmp_path / "pct", 2, "Q", raw_root=tmp_path / "raw", progress=False)
