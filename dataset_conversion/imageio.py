"""Reading source files (NIfTI/NRRD/MHA via SimpleITK, DICOM series, PNG slices) with checks.

Every failure is a `BadInputError` naming the file. Images keep their own geometry until
`to_lps` reorients them (a lossless axis permutation/flip) so that all converted data share one
voxel-axis convention; the physical position of every voxel is unchanged.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from suprem_nnunet.dataset.dicom_io import DicomSeriesError, read_series, series_layout
from suprem_nnunet.dataset.image_checks import check_nifti_finite, itk_reason, nifti_problem

from .errors import BadInputError

#: Spacing may differ by this relative amount, origins by this fraction of a voxel.
SPACING_RTOL = 1e-3
ORIGIN_VOXEL_TOL = 0.05
DIRECTION_ATOL = 1e-3
NIFTI_EXTS = (".nii", ".nii.gz")


def natural_key(p: Path) -> list:
    """Sort key that orders 'img2' before 'img10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def check_nifti_complete(path: Path) -> None:
    """Raise if a NIfTI-1 file (optionally gzipped) is truncated, its compression is corrupt or its
    header claims an impossible number of voxels (ITK fills missing voxels silently)."""
    problem = nifti_problem(path)
    if problem:
        raise BadInputError(path, problem)


def read_image(path: Path) -> sitk.Image:
    """Read a 3D scalar image (any format SimpleITK reads); 4D images with one volume are squeezed."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    if path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes)")
    if path.name.lower().endswith(NIFTI_EXTS):
        check_nifti_complete(path)
        try:  # SimpleITK would read NaN / Inf as 0
            check_nifti_finite(path)
        except ValueError as e:
            raise BadInputError(path, str(e).split(": ", 1)[1]) from None
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise BadInputError(path, f"unreadable or corrupt file ({itk_reason(e)})") from None
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise BadInputError(path, f"expected a 3D image, got {img.GetDimension()}D of size {img.GetSize()}")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise BadInputError(path, f"expected one value per voxel, got {img.GetNumberOfComponentsPerPixel()}")
    return img


def grid_mismatch(a: sitk.Image, b: sitk.Image) -> Optional[str]:
    """None when `a` and `b` share a voxel grid, else a short description of the difference."""
    def fmt(v, digits: int) -> tuple:
        return tuple(float(x) + 0.0 for x in np.round(np.asarray(v, float), digits))

    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    sa, sb = np.array(a.GetSpacing()), np.array(b.GetSpacing())
    if not np.allclose(sa, sb, rtol=SPACING_RTOL, atol=0):
        return f"spacing {fmt(sa, 4)} vs {fmt(sb, 4)}"
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=DIRECTION_ATOL):
        ca, cb = orientation_code(a), orientation_code(b)
        return f"direction {ca} vs {cb}" if ca != cb else f"direction {fmt(a.GetDirection(), 3)} vs {fmt(b.GetDirection(), 3)}"
    oa, ob = np.array(a.GetOrigin()), np.array(b.GetOrigin())
    if np.abs(oa - ob).max() > ORIGIN_VOXEL_TOL * sa.min():
        return f"origin {fmt(oa, 2)} vs {fmt(ob, 2)}"
    return None


def orientation_code(img: sitk.Image) -> str:
    """Three-letter code (ITK/DICOM convention, e.g. 'LPS') of the image's voxel axes."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())


def align_to(label: sitk.Image, image: sitk.Image, label_path: Path, image_path: Path) -> sitk.Image:
    """`label` on the voxel grid of `image`.

    Accepted: the same grid, or the same physical grid stored with another axis order / flips
    (reoriented here, no resampling). Anything else is a geometry mismatch.
    """
    why = grid_mismatch(label, image)
    if why is not None:
        turned = sitk.DICOMOrient(label, orientation_code(image))
        why = grid_mismatch(turned, image)  # compared in the image's own axis order
        if why is None:
            label = turned
    if why is not None:
        raise BadInputError(label_path, f"geometry does not match image {Path(image_path).name}: {why}")
    label = sitk.Image(label)
    label.CopyInformation(image)
    return label


def to_lps(img: sitk.Image) -> sitk.Image:
    """Reorient so the voxel axes run (as closely as possible) towards patient L, P, S."""
    out = sitk.DICOMOrient(img, "LPS")
    out.SetDirection([float(v) + 0.0 for v in out.GetDirection()])  # no '-0.0' in headers
    return out


def label_array(img: sitk.Image, path: Path, allowed: Sequence[int]) -> np.ndarray:
    """Integer label array (z, y, x); float labels must hold whole numbers; values must be `allowed`."""
    arr = sitk.GetArrayFromImage(img)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise BadInputError(path, "label contains NaN or infinite values")
        rounded = np.rint(arr)
        if np.abs(arr - rounded).max(initial=0) > 1e-3:
            raise BadInputError(path, "float label holds values that are not whole numbers")
        arr = rounded
    elif arr.dtype.kind not in "iub":
        raise BadInputError(path, f"label pixel type {arr.dtype} is not an integer or float type")
    if arr.size and arr.min() < 0:
        raise BadInputError(path, f"label value {int(arr.min())} is not defined by the source")
    arr = arr.astype(np.int32 if arr.size and arr.max() > 32767 else np.int16, copy=False)
    present = np.flatnonzero(np.bincount(arr.ravel()))
    bad = sorted(set(present.tolist()) - set(allowed) - {0})
    if bad:
        raise BadInputError(path, f"label values {bad} are not defined by the source "
                                  f"(defined: 0, {', '.join(map(str, sorted(allowed)))})")
    return arr


# ---------------------------------------------------------------------------------------- DICOM
def dicom_files(folder: Path) -> List[Path]:
    """DICOM files below `folder`: '*.dcm', or every extension-less non-hidden file if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(folder, "DICOM folder not found")
    files = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm"
                    and not p.name.startswith(".")), key=natural_key)
    if not files:
        files = sorted((p for p in folder.rglob("*") if p.is_file() and not p.suffix
                        and not p.name.startswith(".")), key=natural_key)
    if not files:
        raise BadInputError(folder, "no DICOM files found")
    return files


def dicom_order(folder: Path, files: Optional[List[Path]] = None) -> List[Path]:
    """The files of one DICOM series sorted by slice position along the slice normal.

    Checks (`suprem_nnunet.dataset.dicom_io.series_layout`): one series, one orientation, matrix
    size and pixel spacing, at least 2 slices, no duplicate and no missing slice (gap in slice
    position or in InstanceNumber), even slice spacing, and no gantry tilt (a sheared slice stack
    would not match labels drawn on its slices).
    """
    folder = Path(folder)
    files = list(files) if files is not None else dicom_files(folder)
    try:
        return series_layout(folder, files, tilt="error").files
    except DicomSeriesError as e:
        raise BadInputError(e.path, e.problem) from None


def read_dicom_series(folder: Path, files: Optional[List[Path]] = None) -> Tuple[sitk.Image, List[Path]]:
    """Read one checked DICOM series (see `dicom_order`; every slice with its own rescale slope and
    intercept); returns the image and its ordered files."""
    folder = Path(folder)
    files = list(files) if files is not None else dicom_files(folder)
    try:
        img, layout = read_series(folder, files, tilt="error")
    except DicomSeriesError as e:
        raise BadInputError(e.path, e.problem) from None
    return img, layout.files


def read_png(path: Path) -> np.ndarray:
    """A 2D grey-level PNG as an array (rows, columns)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    try:
        with Image.open(path) as im:
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise BadInputError(path, f"unreadable or corrupt PNG ({type(e).__name__})") from None
    if arr.ndim == 3:
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[2], 3))):
            raise BadInputError(path, "colour PNG mask; expected grey levels")
        arr = arr[..., 0]
    return arr
