"""DICOM-SEG output (highdicom): one SEG per case referencing its source series, coded segments of
the classes present only, and read back (highdicom) equal to the NIfTI output voxel for voxel."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.paths import real_data
from helpers.dicom_synth import write_series
from suprem_nnunet.cli import predict as predict_cli
from suprem_nnunet.dataset.dicom_io import read_series
from suprem_nnunet.inference.dicom_seg import write_dicom_seg
from suprem_nnunet.inference.predict import predict
from suprem_nnunet.benchmarks.reference_nets import band_model, band_phantom
from suprem_nnunet.labels import ATLAS_CLASSES, CLASSES
from suprem_nnunet.labels.snomed import segment_concept

NAMES = ["liver", "spleen", "gall_bladder"]


@pytest.fixture(scope="module")
def case(tmp_path_factory, one_torch_thread):
    """The band phantom as an axial DICOM series (pydicom) and a deterministic tiny model."""
    root = tmp_path_factory.mktemp("dicom_seg")
    hu, _ = band_phantom((20, 40, 44), len(NAMES) + 1, seed=1)
    files = write_series(root / "series", hu, [(-30.0, 12.0, 100.0 + 2.5 * k) for k in range(hu.shape[0])],
                         pixel_spacing=(1.4, 1.6), names=[f"im{k:03d}" for k in range(hu.shape[0])][::-1])
    model = band_model(NAMES, root / "model", spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16))
    return root, files, model


def read_back(seg_file, source_files):
    """(label map (slices, rows, cols) in the order of `source_files`, {segment number: label}) by highdicom."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(str(seg_file))
    uids = [str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in source_files]
    px = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)
    return np.asarray(px), {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}, seg


def _as_label_ids(px, numbers, class_ids):
    lut = np.zeros(max(numbers) + 1, np.int64)
    for n, label in numbers.items():
        lut[n] = class_ids[label]
    return lut[px]


def test_seg_equals_the_nifti_output_and_references_the_series(case, tmp_path):
    root, files, model = case
    out = tmp_path / "out"
    written = predict(root / "series", out, model, output_type="both", roi_subset=["liver", "gallbladder"])
    nii, dcm = sorted(written, key=lambda p: p.name.endswith(".dcm"))
    assert nii.name == "series.nii.gz" and dcm.name == "series.dcm"
    classes = json.loads((out / "classes.json").read_text())
    img, layout = read_series(root / "series")
    px, numbers, seg = read_back(dcm, layout.files)
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(nii)))
    present = sorted(n for n, i in classes.items() if i and (nifti == i).any())
    assert sorted(numbers.values()) == present and set(present) <= {"liver", "gall_bladder"} and present
    assert np.array_equal(_as_label_ids(px, numbers, classes), nifti)  # voxel for voxel, in slice order
    import pydicom

    src = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    refs = {str(r.ReferencedSOPInstanceUID) for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == {str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in files}
    liver = next(s for s in seg.SegmentSequence if s.SegmentLabel == "liver")
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"


def test_dicom_seg_only_leaves_no_nifti(case, tmp_path):
    root, _, model = case
    [dcm] = predict(root / "series", tmp_path / "out", model, output_type="dicom-seg")
    assert dcm.suffix == ".dcm" and not list((tmp_path / "out").glob("*.nii.gz"))
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".tmp")]


def test_nifti_input_with_dicom_seg_is_one_line(case, tmp_path, capsys):
    root, files, model = case
    img, _ = read_series(root / "series")
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    with pytest.raises(ValueError) as e:
        predict(tmp_path / "ct.nii.gz", tmp_path / "out", model, output_type="dicom-seg")
    assert "\n" not in str(e.value) and "needs a DICOM series" in str(e.value) and "ct.nii.gz" in str(e.value)
    assert not (tmp_path / "out").exists()
    import torch

    torch.save({"network_weights": model.state_dict, "trainer_name": model.trainer_name,
                "init_args": {"plans": model.plans, "configuration": model.configuration,
                              "dataset_json": model.dataset_json},
                "inference_allowed_mirroring_axes": model.mirror_axes}, tmp_path / "m.pth")
    rc = predict_cli.main(["-i", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "m.pth"),
                           "--device", "cpu", "--output-type", "both"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "needs a DICOM series" in err


def test_tilted_series_seg_lies_on_the_source_slices(tmp_path):
    """Labels on the resampled (orthogonal) grid go back onto each tilted source slice (n = 10 slices)."""
    n, rows, cols = 10, 20, 24
    step, shear = 2.5, 2.5 * np.tan(np.radians(20))
    ipps = [(0.0, k * shear, k * step) for k in range(n)]
    stored = np.full((n, rows, cols), -1000, np.int16)
    stored[:, 5:15, 6:18] = 50  # a box drawn on every source slice's own pixel grid
    files = write_series(tmp_path / "t", stored, ipps, pixel_spacing=(0.9, 0.8))
    img, layout = read_series(tmp_path / "t")
    labels = (sitk.GetArrayFromImage(img) > -475).astype(np.uint8) * 5  # liver where the box is, on the new grid
    lab_img = sitk.GetImageFromArray(labels)
    lab_img.CopyInformation(img)
    sitk.WriteImage(lab_img, str(tmp_path / "t.nii.gz"))
    dcm = write_dicom_seg(tmp_path / "t.nii.gz", tmp_path / "t", tmp_path / "t.dcm", {"liver": 5})
    px, numbers, _ = read_back(dcm, layout.files)
    assert numbers == {1: "liver"} and px.shape == (n, rows, cols)
    assert np.array_equal(px, layout.to_source_grid(labels) // 5)
    assert (px.astype(bool) != (stored > -475)).sum() <= 2 * n * (10 + 12)  # at most the box's rim differs


def test_real_ct_with_its_real_liver_mask(tmp_path):
    """The dcmqi 3-slice CT and its liver / spine NRRD masks: SEG read back equals the masks."""
    src = real_data("dcmqi_ct3slice", "dicom")
    img, layout = read_series(src)
    mask = sitk.ReadImage(str(real_data("dcmqi_ct3slice", "liver_spine_seg.nrrd")))
    arr = sitk.GetArrayFromImage(mask).astype(np.uint8)
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(img)
    sitk.WriteImage(lab, str(tmp_path / "m.nii.gz"))
    dcm = write_dicom_seg(tmp_path / "m.nii.gz", src, tmp_path / "m.dcm", {"liver": 1, "vertebrae": 2, "spleen": 3})
    px, numbers, seg = read_back(dcm, layout.files)
    assert numbers == {1: "liver", 2: "vertebrae"}  # spleen: not present, not in the SEG
    assert np.array_equal(_as_label_ids(px, numbers, {"liver": 1, "vertebrae": 2}), arr)
    assert seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "51282000"


def test_snomed_codes_are_dicom_ps3_16_concepts():
    """Every code of labels/snomed.py is the SNOMED CT concept pydicom's codedict (DICOM PS3.16) gives."""
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    known = {}
    for kw in codes.SCT.dir():
        c = getattr(codes.SCT, kw)
        if isinstance(c, Code):
            known.setdefault(c.value, set()).add(c.meaning.lower())
    seen = 0
    for row in CLASSES:
        c = segment_concept(row.name)
        for code in (c.category, c.type, c.laterality, c.region):
            if code is not None:
                assert code[1].lower() in known.get(code[0], set()), (row.name, code)
                seen += 1
    assert seen > 2 * len(CLASSES)
    assert segment_concept("kidney_left").laterality == ("7771000", "Left")
    assert segment_concept("kidney_cyst").type == ("367643001", "Cyst")
    assert segment_concept("lung_tumor").region == ("39607008", "Lung")
    assert sum(not segment_concept(n).generic for n in ATLAS_CLASSES) >= 28
