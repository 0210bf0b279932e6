"""DICOM series input against a pydicom reference reader (geometry from ImagePositionPatient /
ImageOrientationPatient, values with each slice's own rescale): oblique, shuffled, gantry-tilted
and per-slice-rescaled synthetic series written by pydicom, a real 3-slice CT, and bad input
(one line, no ITK/GDCM warning on the terminal)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.paths import real_data
from helpers.dicom_synth import reference_read, sample, write_series
from suprem_nnunet.dataset.dicom_io import DicomSeriesError, read_series
from suprem_nnunet.inference.dicom import series_to_nifti
from suprem_nnunet.inference.predict import resolve_inputs
from suprem_nnunet.dataset.cases import check_readable

ROWS, COLS, N = 24, 28, 12
PS = (0.8, 0.7)  # PixelSpacing: between rows, between columns (mm)
STEP = 2.5


def _linear_field(points: np.ndarray) -> np.ndarray:
    """A value that encodes the physical position (so misplacement shows as a wrong value)."""
    return 3.0 * points[..., 0] + 2.0 * points[..., 1] + 1.0 * points[..., 2]


def _stack(iop, shear=(0.0, 0.0), origin=(-10.0, 20.0, 50.0)):
    """IPPs of N slices STEP apart along the normal of `iop`, shifted within the plane by
    k * `shear` (mm along row dir, col dir) from slice to slice."""
    iop = np.asarray(iop, float)
    r, c = iop[:3], iop[3:]
    n = np.cross(r, c)
    return [np.asarray(origin) + k * STEP * n + k * shear[0] * r + k * shear[1] * c for k in range(N)]


def _points(ipp, iop):
    iop = np.asarray(iop, float)
    rr, cc = np.meshgrid(np.arange(ROWS), np.arange(COLS), indexing="ij")
    return ipp + (cc * PS[1])[..., None] * iop[:3] + (rr * PS[0])[..., None] * iop[3:]


def _field_series(folder, iop, ipps, **kw):
    """Stored ints = round(100 * field), slope 0.01: the values are the field to 0.005."""
    stored = np.stack([np.rint(_linear_field(_points(p, iop)) * 100) for p in ipps]).astype(np.int16)
    return write_series(folder, stored, ipps, iop, PS, slopes=[0.01] * N, intercepts=[0] * N, **kw)


def test_oblique_shuffled_series_equals_the_pydicom_reference(tmp_path):
    """Oblique orientation (rotated about two axes), file names and file order shuffled: every
    reference pixel (n = 12 x 24 x 28) is found at its physical position with its value."""
    rng = np.random.default_rng(0)
    a, b = np.radians(20), np.radians(-35)
    rot = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]]) @ \
        np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    iop = list(rot[:, 0]) + list(rot[:, 1])
    ipps = _stack(iop)
    stored = rng.integers(-1000, 2000, (N, ROWS, COLS)).astype(np.int16)
    names = [f"x{v:04d}.dcm" for v in rng.permutation(9000)[:N]]
    files = write_series(tmp_path / "s", stored, ipps, iop, PS, names=names)
    img, layout = read_series(tmp_path / "s")
    ref, pts = reference_read(files)
    got = sample(img, pts)
    assert np.array_equal(got, ref) and img.GetPixelID() == sitk.sitkInt16
    assert not layout.sheared and np.allclose(img.GetSpacing(), (PS[1], PS[0], STEP))


@pytest.mark.parametrize("shear_deg,axis", [(15.0, 1), (-22.0, 1), (10.0, 0)])
def test_gantry_tilted_series_is_resampled_onto_the_right_grid(tmp_path, shear_deg, axis):
    """Axial slices sheared along y (a tilted gantry) or x: each slice moves by STEP * tan(tilt)
    within its plane (15 deg: 0.67 mm = 0.84 px per slice, 7.4 mm over 12 slices). Every reference
    pixel but each slice's outermost ones (n = 12 x 22 x 26) read back at its physical position
    within 0.01 (field units: 1 = 1/3 mm in x), while SimpleITK's series reader misplaces the stack."""
    iop = (1, 0, 0, 0, 1, 0)
    shear = [0.0, 0.0]
    shear[axis] = STEP * np.tan(np.radians(shear_deg))
    ipps = _stack(iop, tuple(shear))
    files = _field_series(tmp_path / "t", iop, ipps, tilt_tag=shear_deg)
    img, layout = read_series(tmp_path / "t")
    ref, pts = reference_read(files)
    got = sample(img, pts)
    assert layout.sheared and layout.tilt_deg == pytest.approx(abs(shear_deg), abs=0.01)
    inner = (slice(None), slice(1, -1), slice(1, -1))  # a slice's outermost pixels blend with the fill
    assert not np.isnan(got).any() and np.abs(got - ref)[inner].max() < 0.01
    gdcm = sitk.ImageSeriesReader()
    gdcm.SetFileNames([str(f) for f in files])
    old = sample(gdcm.Execute(), pts)
    assert np.nanmax(np.abs(old - ref)) > 10  # > 3 mm misplaced (the unfixed reader)
    # labels drawn on the output grid go back onto each source slice's own pixels (DICOM-SEG)
    lab = (sitk.GetArrayFromImage(img) > np.median(sitk.GetArrayFromImage(img))).astype(np.uint8)
    back = layout.to_source_grid(lab)
    d = np.array(img.GetDirection()).reshape(3, 3)
    idx = np.rint((pts - np.array(img.GetOrigin())) @ d / np.array(img.GetSpacing())).astype(int)
    x, y, z = np.moveaxis(idx, -1, 0)
    assert back.shape == (N, ROWS, COLS) and np.array_equal(back, lab[z, y, x])  # the nearest output voxel's label
    assert 0.2 < back.mean() < 0.9  # both labels occur


def test_tilt_error_mode_and_tilt_tag_without_shear(tmp_path):
    iop = (1, 0, 0, 0, 1, 0)
    _field_series(tmp_path / "t", iop, _stack(iop, (0.0, 0.8)))
    with pytest.raises(DicomSeriesError) as e:
        read_series(tmp_path / "t", tilt="error")
    assert "\n" not in str(e.value) and str(tmp_path / "t") in str(e.value) and "gantry-tilted" in str(e.value)
    files = _field_series(tmp_path / "u", iop, _stack(iop), tilt_tag=12.0)  # tag set, positions along the normal
    img, layout = read_series(tmp_path / "u")
    ref, pts = reference_read(files)
    assert not layout.sheared and np.abs(sample(img, pts) - ref).max() < 1e-4  # float32 of 0.01 steps


def test_per_slice_rescale_keeps_half_hu_steps(tmp_path):
    """Slopes and intercepts differ between slices (0.5 / 1, -1000.5 / -1024): the 0.5 HU steps
    survive (float32 output) and equal the reference on all n = 8064 voxels; SimpleITK's series
    reader gives the first file's integer type and loses them."""
    rng = np.random.default_rng(1)
    iop = (1, 0, 0, 0, 1, 0)
    stored = rng.integers(0, 3000, (N, ROWS, COLS)).astype(np.int16)
    slopes = [1.0 if k % 2 else 0.5 for k in range(N)]  # the first file by name (k = 11) has slope 1
    intercepts = [-1024.0 if k % 2 else -1000.5 for k in range(N)]
    files = write_series(tmp_path / "r", stored, _stack(iop), iop, PS, slopes=slopes, intercepts=intercepts,
                         names=[f"{k:03d}.dcm" for k in reversed(range(N))])  # names against position
    img, _ = read_series(tmp_path / "r")
    ref, pts = reference_read(files)
    assert img.GetPixelID() == sitk.sitkFloat32 and np.array_equal(sample(img, pts), ref)
    half = np.mod(ref, 1) == 0.5
    assert half.sum() > 1000
    gdcm = sitk.ImageSeriesReader()
    gdcm.SetFileNames(sorted(str(f) for f in files))
    assert not (np.mod(sitk.GetArrayFromImage(gdcm.Execute()), 1) == 0.5).any()


def test_real_three_slice_ct_equals_the_reference_and_gdcm_geometry(tmp_path):
    src = real_data("dcmqi_ct3slice", "dicom")
    img, layout = read_series(src)
    ref, pts = reference_read(layout.files)
    assert img.GetSize() == (512, 512, 3) and np.array_equal(sample(img, pts), ref)
    gdcm = sitk.ImageSeriesReader()
    gdcm.SetFileNames(gdcm.GetGDCMSeriesFileNames(str(src)))
    g = gdcm.Execute()
    assert np.allclose(img.GetOrigin(), g.GetOrigin(), atol=1e-4) and np.allclose(img.GetSpacing(), g.GetSpacing())
    assert np.allclose(img.GetDirection(), g.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(g))
    out = series_to_nifti(src, tmp_path / "ct.nii.gz")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), sitk.GetArrayFromImage(g))


def _one_slice(folder):
    write_series(folder, np.zeros((1, ROWS, COLS), np.int16), [(0, 0, 0)])


def _irregular(folder):
    ipps = [(0, 0, z) for z in (0, 2.5, 5, 7.5, 10.5, 13, 15.5)]
    write_series(folder, np.zeros((7, ROWS, COLS), np.int16), ipps)


def _empty_and_dangling(folder):
    folder.mkdir()
    (folder / "a.dcm").write_bytes(b"")
    (folder / "b.nii.gz").symlink_to(folder / "nowhere.nii.gz")


def _truncated(folder):
    files = write_series(folder, np.zeros((4, ROWS, COLS), np.int16), [(0, 0, 2.5 * k) for k in range(4)])
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 300])


@pytest.mark.parametrize("bad,expect", [(_one_slice, "1 slice(s)"), (_irregular, "irregular slice spacing"),
                                        (_empty_and_dangling, "no DICOM series"),
                                        (_truncated, "002.dcm: pixel data cannot be decoded")])
def test_bad_series_is_one_line_without_itk_warnings(tmp_path, capfd, bad, expect):
    bad(tmp_path / "in")
    capfd.readouterr()
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        resolve_inputs(tmp_path / "in", 1, tmp_path / "work")
    msg = str(e.value)
    err = capfd.readouterr().err
    assert "\n" not in msg and expect in msg and str(tmp_path / "in") in msg
    assert "WARNING" not in err and "itk" not in err.lower() and "gdcm" not in err.lower(), err
    assert not list((tmp_path / "work").glob("*.nii.gz")) if (tmp_path / "work").exists() else True


def test_one_slice_nifti_is_one_line(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((1, 20, 20), np.int16))
    sitk.WriteImage(img, str(tmp_path / "one.nii.gz"))
    with pytest.raises(ValueError, match=r"one\.nii\.gz: image of size \(20, 20, 1\) .* only one voxel along an axis"):
        check_readable([str(tmp_path / "one.nii.gz")])


def _dangling_mhd(folder):
    folder.mkdir()
    (folder / "a.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
                                  "ElementDataFile = a.raw\n")  # a.raw never written
    return folder / "a.mhd", "voxel data file"


def _cut_nrrd(folder):
    folder.mkdir()
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    sitk.WriteImage(img, str(folder / "full.nrrd"), False)
    (folder / "a.nrrd").write_bytes((folder / "full.nrrd").read_bytes()[:60])
    (folder / "full.nrrd").unlink()
    return folder / "a.nrrd", "cannot be read as an image"


@pytest.mark.parametrize("make", [_dangling_mhd, _cut_nrrd])
def test_broken_image_file_is_one_line_without_itk_warnings(tmp_path, capfd, make):
    path, expect = make(tmp_path / "in")
    capfd.readouterr()
    with pytest.raises(ValueError) as e:
        check_readable([str(path)])
    err = capfd.readouterr().err
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{path}: ") and expect in str(e.value)
    assert "WARNING" not in err and "itk" not in err.lower(), err
