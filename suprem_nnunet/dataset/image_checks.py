"""Checks that an image file is whole and usable before anything reads its voxels.

ITK reads a truncated NIfTI without complaint (missing voxels become 0), allocates whatever a
header claims (a corrupt header asking for 10^12 voxels ends in an allocation failure or worse),
turns NaN into 0 in some readers and reports problems in multi-line messages naming C++ files.
These functions raise one-line `ValueError`/`FileNotFoundError` messages that name the file and
the problem instead. Used by conversion, prediction, evaluation and the raw-dataset check.
"""
from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
from .dicom_io import quiet_itk
from ..errors import InputError, MissingFileError

PathLike = Union[str, Path]
#: a header claiming more voxels than this is refused before reading (a 512 x 512 x 2000 CT is 5.2e8)
MAX_VOXELS = 4 * 1024 ** 3
NIFTI_ENDINGS = (".nii", ".nii.gz")


def nifti_problem(path: PathLike) -> Optional[str]:
    """Why a NIfTI-1 file (optionally gzipped) is not whole, or None: an empty or corrupt gzip
    stream, no header, fewer voxel bytes than the header promises."""
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(348)
            total = len(head)
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        return f"unreadable or corrupt file ({type(e).__name__}: {e})"
    if len(head) < 348:
        return f"unreadable or corrupt file (only {total} bytes, no NIfTI header)"
    for endian in "<>":
        if struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            n = int(np.prod([max(d, 1) for d in dims[1:1 + max(min(dims[0], 7), 0)]], dtype=np.float64))
            expected = max(offset, 348) + n * bitpix // 8
            if n > MAX_VOXELS:
                return (f"the header claims {n:.3g} voxels ({'x'.join(map(str, dims[1:1 + dims[0]]))}), more than "
                        f"{MAX_VOXELS:.3g}; corrupt header")
            if total < expected:
                return f"truncated file: {total} of {expected} bytes"
            return None
    return None  # NIfTI-2 or not NIfTI: left to the reader


def itk_reason(e: Exception) -> str:
    """The useful last line of an ITK/SimpleITK exception, without C++ locations, paths or addresses."""
    text = str(e)
    if "Unable to determine ImageIO reader" in text:
        return "not an image format SimpleITK can read, or a corrupt file"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("Exception thrown")]
    msg = lines[-1] if lines else type(e).__name__
    msg = re.sub(r'"[^"]*"', "", msg)
    msg = re.sub(r"\(0x[0-9a-fA-F]+\)", "", msg)
    msg = re.sub(r"\S*\.(hxx|cxx|cpp|h):\d+:?", "", msg)
    return " ".join(msg.replace("ITK ERROR:", "").replace("sitk::ERROR:", "").split())[:160]


def _a(what: str) -> str:
    return f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"


def detached_data_problem(path: PathLike) -> Optional[str]:
    """For a header with its voxels in another file (.mhd ElementDataFile, .nhdr 'data file'): the
    problem when that file is missing (a dangling reference), else None."""
    path = Path(path)
    low = path.name.lower()
    keys = ("elementdatafile",) if low.endswith(".mhd") else ("data file", "datafile") if low.endswith(".nhdr") else ()
    if not keys:
        return None
    try:
        head = path.read_bytes()[:65536].decode("latin-1")
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    for line in head.splitlines():
        key, sep, value = line.partition("=" if low.endswith(".mhd") else ":")
        if sep and key.strip().lower() in keys:
            value = value.strip()
            if value.upper() == "LOCAL" or value.upper().startswith("LIST") or "%" in value:
                return None
            data = Path(value) if Path(value).is_absolute() else path.parent / value
            return None if data.is_file() else f"its voxel data file {data} is missing"
    return None


def check_image_file(path: PathLike, what: str = "image", finite: bool = False, volume: bool = False):
    """The header of a whole 3D scalar image file (a SimpleITK ImageFileReader with its information
    read); one-line errors for a missing, empty, truncated, corrupt, huge, 2D, 4D or vector image,
    with `finite` for a float NIfTI holding NaN or infinite values, and with `volume` for an image
    with fewer than 2 voxels along an axis (one slice: a 3D network's input cannot be that thin)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: {what} file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if path.name.lower().endswith(NIFTI_ENDINGS):
        problem = nifti_problem(path)
        if problem:
            raise InputError(f"{path}: {problem.replace('unreadable or corrupt file', f'cannot be read as {_a(what)}, corrupt file')}")

    detached = detached_data_problem(path)
    if detached:
        raise InputError(f"{path}: {detached}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_itk():  # our one-line error, not ITK's C++ warnings
            reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(f"{path}: cannot be read as {_a(what)} ({itk_reason(e)})") from None
    size = reader.GetSize()
    if reader.GetDimension() == 4 and size[3] > 1:
        raise InputError(f"{path}: expected a 3D {what}, got a 4D one of size {size} ({size[3]} volumes)")
    if reader.GetDimension() not in (3, 4):
        raise InputError(f"{path}: expected a 3D {what}, got {reader.GetDimension()}D of size {size}")
    if reader.GetNumberOfComponents() != 1:
        raise InputError(f"{path}: expected a 3D {what} with one value per voxel, got "
                         f"{reader.GetNumberOfComponents()} (a 4D or vector image)")
    if float(np.prod(size, dtype=np.float64)) > MAX_VOXELS:
        raise InputError(f"{path}: the header claims {np.prod(size, dtype=np.float64):.3g} voxels {size}; "
                         "corrupt header")
    if volume and min(size[:3]) < 2:
        raise InputError(f"{path}: {what} of size {tuple(size[:3])} (x, y, z) has only one voxel along an axis; "
                         "a 3D image needs at least 2 along every axis")
    if finite and path.name.lower().endswith(NIFTI_ENDINGS):
        check_nifti_finite(path)
    return reader


def read_checked_image(path: PathLike, what: str = "image"):
    """`check_image_file`, then the image itself (a 4D file of one volume squeezed to 3D)."""
    import SimpleITK as sitk


    check_image_file(path, what)
    try:
        with quiet_itk():
            img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputError(f"{path}: cannot be read as {_a(what)} ({itk_reason(e)})") from None
    if img.GetDimension() == 4:
        img = img[:, :, :, 0]
    return img


def check_nifti_finite(path: PathLike) -> None:
    """ValueError naming a float NIfTI that holds NaN or infinite values. SimpleITK's NIfTI reader
    turns them into 0 silently, so the voxels are read with nibabel (integer files are skipped)."""
    import nibabel as nib

    img = nib.load(str(path))
    if np.issubdtype(img.get_data_dtype(), np.floating):
        check_finite(path, np.asanyarray(img.dataobj))


def check_finite(path: PathLike, arr: np.ndarray) -> None:
    """ValueError naming `path` when a float array holds NaN or infinite values."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{path}: the image holds {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")


def check_label_values(path: PathLike, arr: np.ndarray, ids) -> np.ndarray:
    """The label array as integers; ValueError naming `path` for non-whole float values or values
    outside `ids` (the label map's ids, background included)."""
    if arr.dtype.kind == "f":
        check_finite(path, arr)
        rounded = np.rint(arr)
        if arr.size and np.abs(arr - rounded).max() > 1e-3:
            raise InputError(f"{path}: label map holds values that are not whole numbers "
                             f"(e.g. {float(arr[np.abs(arr - rounded) > 1e-3].flat[0]):g})")
        arr = rounded.astype(np.int64)
    values = np.unique(arr)
    bad = sorted(set(values.tolist()) - {int(i) for i in ids})
    if bad:
        raise InputError(f"{path}: label value(s) {', '.join(map(str, bad[:5]))} not in the label map "
                         f"(ids {', '.join(map(str, sorted(int(i) for i in ids)))})")
    return arr


#: (what, absolute tolerance) of the geometry two images on one grid must share
GEOMETRY_TOLERANCES = (("size", 0.0), ("spacing", 1e-4), ("origin", 1e-3), ("direction", 1e-4))


def geometry_difference(a, b, rtol: float = 0.0) -> Optional[Tuple[str, Tuple[Any, ...], Tuple[Any, ...]]]:
    """The first of size, spacing, origin and direction in which SimpleITK images `a` and `b`
    differ beyond `GEOMETRY_TOLERANCES` (and `rtol`, not applied to the size), as (what, a's value,
    b's value); None when they share one grid."""
    for what, atol in GEOMETRY_TOLERANCES:
        get = "Get" + what.capitalize()
        va, vb = getattr(a, get)(), getattr(b, get)()
        if len(va) != len(vb) or not np.allclose(va, vb, atol=atol, rtol=rtol if atol else 0.0):
            return what, tuple(va), tuple(vb)
    return None


def rounded(values) -> Tuple[float, ...]:
    """`values` as floats rounded to 4 decimals, for messages."""
    return tuple(round(float(x), 4) for x in values)

