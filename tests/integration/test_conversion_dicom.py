"""DICOM sources (Pancreas-CT, CHAOS CT, RSNA 2023) from miniature replicas, and DICOM checks."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from helpers.conversion_replicas import (check_case, masks, phantom, read_dataset, sitk_image, source_label,
                                 write_dicom_series)
from dataset_conversion.errors import BadInputError
from dataset_conversion.imageio import read_dicom_series
from dataset_conversion.runner import convert

SMALL = dict(shape=(24, 20, 16), spacing=(14.0, 14.0, 15.0))


def run(src, root, tmp_path, **kw):
    rep = convert(src, root, 1, "T", raw_root=tmp_path / "raw", progress=False, **kw)
    return tmp_path / "raw" / "Dataset001_T", rep


def test_pancreas_ct_dicom_with_nifti_labels_and_removed_duplicates(tmp_path):
    ph = phantom(91, "LPS", **SMALL)
    write_dicom_series(tmp_path / "in/Pancreas-CT/PANCREAS_0001/11-24-2015-Pancreas-18957/Pancreas-99667", ph,
                       names=lambda i: f"1-{i + 1:03d}.dcm", reverse_files=True)
    # the label NIfTI is stored in another axis orientation than the DICOM (same physical grid)
    lab = sitk.DICOMOrient(sitk_image(source_label(ph, {1: "pancreas"}), ph), "RAS")
    (tmp_path / "in/labels").mkdir(parents=True)
    sitk.WriteImage(lab, str(tmp_path / "in/labels/label0001.nii.gz"))
    sitk.WriteImage(lab, str(tmp_path / "in/labels/label0025.nii.gz"))  # image removed upstream
    folder, rep = run("pancreas_ct", tmp_path / "in", tmp_path)
    check_case(folder, "pancreasct_0001", ph, ["pancreas"])
    assert [e["case"] for e in rep.excluded] == ["pancreasct_0025"]
    assert read_dataset(folder)[0]["case_sources"]["pancreasct_0001"]["source_id"] == "PANCREAS_0001"


def test_dicom_missing_slice_is_bad_input(tmp_path):
    ph = phantom(92, "LPS", **SMALL)
    files = write_dicom_series(tmp_path / "s", ph)
    files[5].unlink()
    with pytest.raises(BadInputError, match="missing slice"):
        read_dicom_series(tmp_path / "s")


def test_chaos_ct_png_masks(tmp_path):
    ph = phantom(93, "LPS", **SMALL)
    case = tmp_path / "in/CHAOS_Train_Sets/Train_Sets/CT/1"
    files = write_dicom_series(case / "DICOM_anon", ph, names=lambda i: f"i{i:04d},0000b.dcm", reverse_files=True)
    liver = masks(ph)["liver"]
    nz = liver.shape[0]
    (case / "Ground").mkdir()
    for i in range(len(files)):  # PNG i belongs to DICOM file i (files run top to bottom)
        Image.fromarray((liver[nz - 1 - i] * 255).astype(np.uint8)).save(case / "Ground" / f"liver_GT_{i:03d}.png")
    folder, rep = run("chaos_ct", tmp_path / "in", tmp_path)
    check_case(folder, "chaos_1", ph, ["liver"])
    # a mask with an undefined value
    bad = np.array(Image.open(case / "Ground/liver_GT_003.png"))
    bad[0, 0] = 63
    Image.fromarray(bad).save(case / "Ground/liver_GT_003.png")
    with pytest.raises(BadInputError, match=r"liver_GT_003.png: mask values \[63\]"):
        convert("chaos_ct", tmp_path / "in", 2, "B", raw_root=tmp_path / "raw", progress=False)


def test_rsna2023_segmentation_in_other_orientation(tmp_path):
    ph = phantom(94, "LPS", **SMALL)
    spec = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "kidney_right", 5: "bowel"}
    write_dicom_series(tmp_path / "in/train_images/10004/21057", ph)
    seg = sitk.DICOMOrient(sitk_image(source_label(ph, spec), ph), "PLI")  # permuted and flipped axes
    (tmp_path / "in/segmentations").mkdir(parents=True)
    sitk.WriteImage(seg, str(tmp_path / "in/segmentations/21057.nii"))
    write_dicom_series(tmp_path / "in/train_images/10005/300", ph)  # a series without segmentation
    folder, rep = run("rsna2023", tmp_path / "in", tmp_path)
    check_case(folder, "rsna_10004_21057", ph, list(spec.values()))
    assert [e["case"] for e in rep.excluded] == ["rsna_10005_300"]
    # a segmentation on another physical grid is a mismatch, named by file
    shifted = sitk.Image(seg)
    shifted.SetOrigin([o + 30.0 for o in seg.GetOrigin()])
    sitk.WriteImage(shifted, str(tmp_path / "in/segmentations/21057.nii"))
    with pytest.raises(BadInputError, match=r"21057.nii: geometry does not match image 21057: origin"):
        convert("rsna2023", tmp_path / "in", 2, "B", raw_root=tmp_path / "raw", progress=False)
