"""Read one DICOM image series into a 3D SimpleITK image, with its geometry taken from the headers.

Headers are read with pydicom; ITK/GDCM only decodes each file's pixels (any transfer syntax GDCM
knows), with ITK's warnings switched off, so nothing but our one-line errors reaches the terminal.

- Order: slices sorted by ImagePositionPatient (IPP) projected on the slice normal
  (row direction x column direction of ImageOrientationPatient, IOP). One series, one IOP and one
  matrix size; no duplicate or missing slice (a gap in position, or InstanceNumbers that run with
  position and skip one); evenly spaced along the normal (every step within 10 % of the median).
- Rescale: every slice is decoded with its own RescaleSlope / RescaleIntercept. The volume is int16
  (or int32) when every value is an integer that fits, float32 otherwise (e.g. slopes or
  intercepts that differ between slices and give half-HU steps).
- Gantry tilt: when a slice's IPP is offset within the slice plane from the first slice's by more
  than 0.05 voxel and 0.1 mm (the slice stack is sheared: steps not along the normal, the layout
  of a gantry-tilted CT), the volume is resampled onto an orthogonal grid with axes (row, column, normal) and the same spacing:
  each slice keeps its position along the normal and is shifted within its plane by its own IPP
  offset (linear interpolation, subvoxel shifts), onto a canvas grown to hold every shifted slice
  (voxels no slice covers take the volume's minimum; a slice's outermost pixels along the shift
  blend with that fill within one voxel). Every voxel's physical position is then that of
  IPP + i * column spacing * row direction + j * row spacing * column direction, as DICOM defines it.
  `tilt="error"` stops with one line instead. GantryDetectorTilt is reported; the geometry is taken
  from IPP/IOP only (a tilt tag with IPPs along the normal needs no resampling).
- A series of one slice (or a 1-pixel row or column) is not a 3D image: one line.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from ..errors import InputError

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
#: In-plane offset of a slice from the first one above which a series counts as sheared: this many
#: voxels, and at least SHEAR_TOL_MM (IPPs rounded to 0.1 mm are not a tilt).
SHEAR_TOL_VOXELS = 0.05
SHEAR_TOL_MM = 0.1
#: Relative deviation of one slice step from the median step tolerated as rounding.
STEP_RTOL = 0.10


class DicomSeriesError(InputError):
    """A DICOM series that cannot be read as one 3D image; str() is one line: 'path: problem'."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path, self.problem = str(path), " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


@contextmanager
def quiet_itk() -> Iterator[None]:
    """ITK's warning output (GDCM's C++ warnings on stderr) switched off inside the block."""
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


@dataclass(frozen=True)
class SliceHeader:
    path: Path
    series_uid: str
    sop_uid: str
    ipp: Tuple[float, float, float]
    iop: Tuple[float, ...]
    pixel_spacing: Tuple[float, float]  # (between rows, between columns), as PixelSpacing
    size: Tuple[int, int]  # (rows, columns)
    instance: Optional[int]
    tilt_tag: Optional[float]


def _header(path: Path, ds) -> SliceHeader:
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
        if ds.get(tag) is None:
            raise DicomSeriesError(path, f"DICOM image without {tag}")
    try:
        ipp = tuple(float(v) for v in ds.ImagePositionPatient)
        iop = tuple(float(v) for v in ds.ImageOrientationPatient)
        ps = tuple(float(v) for v in ds.PixelSpacing)
        inst = ds.get("InstanceNumber")
        tilt = ds.get("GantryDetectorTilt")
        h = SliceHeader(path, str(ds.SeriesInstanceUID), str(ds.get("SOPInstanceUID", "")), ipp, iop, ps,
                        (int(ds.Rows), int(ds.Columns)), int(inst) if inst not in (None, "") else None,
                        float(tilt) if tilt not in (None, "") else None)
    except (TypeError, ValueError) as e:
        raise DicomSeriesError(path, f"malformed DICOM geometry tags ({e})") from None
    if len(h.ipp) != 3 or len(h.iop) != 6 or len(h.pixel_spacing) != 2 or min(h.pixel_spacing) <= 0:
        raise DicomSeriesError(path, "malformed ImagePositionPatient, ImageOrientationPatient or PixelSpacing")
    return h


def _read_header(path: Path, strict: bool):
    """The pydicom dataset (no pixels) of `path`, or None when it is not a DICOM image and not `strict`."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.exists():
        if strict:
            raise DicomSeriesError(path, "file not found (or a broken link)")
        return None
    if path.stat().st_size == 0:
        if strict:
            raise DicomSeriesError(path, "empty file (0 bytes)")
        return None
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except InvalidDicomError:
        if strict:
            raise DicomSeriesError(path, "not a DICOM file") from None
    except Exception as e:  # pydicom raises many types for broken files
        if strict:
            raise DicomSeriesError(path, f"unreadable DICOM file ({type(e).__name__})") from None
    return None


def find_series(folder: PathLike) -> Dict[str, List[Path]]:
    """{SeriesInstanceUID: files} of the DICOM image files directly in `folder` (hidden files, files
    that are not DICOM, empty files and broken links are passed over); {} when there are none."""
    folder = Path(folder)
    out: Dict[str, List[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or f.is_dir():
            continue
        ds = _read_header(f, strict=False)
        if ds is None or ds.get("SeriesInstanceUID") is None or ds.get("Rows") is None:
            continue
        out.setdefault(str(ds.SeriesInstanceUID), []).append(f)
    return out


@dataclass(frozen=True)
class SeriesLayout:
    """The slices of one series in order, and the grid they are read onto."""

    folder: Path
    series_uid: str
    headers: Tuple[SliceHeader, ...]
    spacing: Tuple[float, float, float]  # (x, y, z) of the output grid
    direction: Tuple[float, ...]  # 9 values, SimpleITK order (columns: row dir, column dir, normal)
    origin: Tuple[float, float, float]
    shifts: Tuple[Tuple[float, float], ...]  # per slice: (rows, columns) in voxels onto the canvas
    canvas: Tuple[int, int]  # (rows, columns) of the output grid
    tilt_deg: float  # shear angle of the slice stack from the normal (0 when not sheared)

    @property
    def files(self) -> List[Path]:
        return [h.path for h in self.headers]

    @property
    def sheared(self) -> bool:
        return self.canvas != self.headers[0].size or any(abs(a) > 1e-9 or abs(b) > 1e-9 for a, b in self.shifts)

    def to_source_grid(self, labels: np.ndarray) -> np.ndarray:
        """A label volume (z, y, x) on the output grid back on the source slices' own pixel grids
        (nearest neighbour); the identity when the series is not sheared."""
        if not self.sheared:
            return labels
        from scipy import ndimage

        rows, cols = self.headers[0].size
        out = np.zeros((len(self.headers), rows, cols), labels.dtype)
        for k, (dy, dx) in enumerate(self.shifts):
            back = ndimage.shift(labels[k], (-dy, -dx), order=0, mode="constant", cval=0)
            out[k] = back[:rows, :cols]
        return out


def series_layout(folder: PathLike, files: Optional[Sequence[PathLike]] = None, tilt: str = "resample") -> SeriesLayout:
    """Check and order one series (all files of `folder`'s one series, or `files`); see the module doc.
    `tilt`: "resample" or "error" for a sheared (gantry-tilted) slice stack."""
    if tilt not in ("resample", "error"):
        raise InputError(f"tilt must be 'resample' or 'error', not {tilt!r}")
    folder = Path(folder)
    if files is None:
        series = find_series(folder)
        if not series:
            raise DicomSeriesError(folder, "no DICOM series in this folder")
        if len(series) > 1:
            raise DicomSeriesError(folder, f"holds {len(series)} DICOM series; expected one")
        files = next(iter(series.values()))
    headers = [_header(Path(f), _read_header(Path(f), strict=True)) for f in files]
    if not headers:
        raise DicomSeriesError(folder, "no DICOM files")
    uids = {h.series_uid for h in headers}
    if len(uids) > 1:
        raise DicomSeriesError(folder, f"holds {len(uids)} DICOM series; expected one")
    uid = headers[0].series_uid
    iop = np.array(headers[0].iop)
    if any(not np.allclose(h.iop, iop, atol=1e-3) or h.size != headers[0].size
           or not np.allclose(h.pixel_spacing, headers[0].pixel_spacing, rtol=1e-4) for h in headers):
        raise DicomSeriesError(folder, "slices differ in orientation, matrix size or pixel spacing")
    row_dir, col_dir = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row_dir, col_dir)
    rows, cols = headers[0].size
    if len(headers) < 2 or rows < 2 or cols < 2:
        raise DicomSeriesError(folder, f"DICOM series {uid} is {len(headers)} slice(s) of {rows}x{cols} pixels; "
                                       "a 3D image needs at least 2 slices of at least 2x2 pixels")
    pos = np.array([np.dot(h.ipp, normal) for h in headers])
    order = np.argsort(pos, kind="stable")
    headers, pos = [headers[i] for i in order], pos[order]
    gaps = np.diff(pos)
    if gaps.min() < 1e-3:
        i = int(np.argmin(gaps))
        raise DicomSeriesError(headers[i + 1].path, f"duplicate slice position (same as {headers[i].path.name})")
    step = float(np.median(gaps))
    if gaps.max() > 1.5 * step:
        i = int(np.argmax(gaps))
        raise DicomSeriesError(folder, f"missing slice: {gaps[i]:.2f} mm gap between {headers[i].path.name} "
                                       f"and {headers[i + 1].path.name} (slice step {step:.2f} mm)")
    numbers = [h.instance for h in headers]
    if all(n is not None for n in numbers):
        d = np.diff(np.array(numbers))
        if bool(np.all(d > 0) or np.all(d < 0)) and np.abs(d).max() > 1:  # numbers run with position
            i = int(np.argmax(np.abs(d)))
            raise DicomSeriesError(folder, f"missing slice: InstanceNumber jumps from {numbers[i]} to {numbers[i + 1]} "
                                           f"between {headers[i].path.name} and {headers[i + 1].path.name}")
    if np.abs(gaps - step).max() > STEP_RTOL * step:
        i = int(np.argmax(np.abs(gaps - step)))
        raise DicomSeriesError(folder, f"irregular slice spacing: {gaps[i]:.3f} mm between {headers[i].path.name} and "
                                       f"{headers[i + 1].path.name}, median step {step:.3f} mm")
    py, px = headers[0].pixel_spacing  # between rows (along the column direction), between columns
    ipp = np.array([h.ipp for h in headers])
    a = (ipp - ipp[0]) @ row_dir  # in-plane offsets of each slice from the first, mm
    b = (ipp - ipp[0]) @ col_dir
    tilt_deg = float(np.degrees(np.arctan2(np.hypot(a[-1], b[-1]), pos[-1] - pos[0])))
    tags = sorted({h.tilt_tag for h in headers if h.tilt_tag is not None})
    sheared = np.abs(a).max() > max(SHEAR_TOL_VOXELS * px, SHEAR_TOL_MM) or \
        np.abs(b).max() > max(SHEAR_TOL_VOXELS * py, SHEAR_TOL_MM)
    if not sheared:
        if any(abs(t) > 1e-3 for t in tags):
            log.info("%s: GantryDetectorTilt %s but the slice positions lie along the slice normal; read as given",
                     folder, ", ".join(f"{t:g}" for t in tags))
        a, b = np.zeros_like(a), np.zeros_like(b)
    else:
        tag = f", GantryDetectorTilt {', '.join(f'{t:g}' for t in tags)}" if tags else ""
        if tilt == "error":
            raise DicomSeriesError(folder, f"DICOM series {uid} is gantry-tilted: slices sheared {tilt_deg:.2f} "
                                           f"degrees off the slice normal{tag}; resample it to an orthogonal grid first")
        log.warning("%s: DICOM series %s is gantry-tilted (slices sheared %.2f degrees off the slice normal%s); "
                    "resampled onto an orthogonal grid", folder, uid, tilt_deg, tag)
    a0, b0 = float(a.min()), float(b.min())
    shifts = tuple((float((bk - b0) / py), float((ak - a0) / px)) for ak, bk in zip(a, b))
    canvas = (rows + int(np.ceil((b.max() - b0) / py - 1e-6)), cols + int(np.ceil((a.max() - a0) / px - 1e-6)))
    origin = ipp[0] + a0 * row_dir + b0 * col_dir
    direction = np.stack([row_dir, col_dir, normal], axis=1)
    return SeriesLayout(folder, uid, tuple(headers), (px, py, step), tuple(float(v) for v in direction.ravel()),
                        tuple(float(v) for v in origin), shifts, canvas, tilt_deg if sheared else 0.0)


def _slice_pixels(h: SliceHeader) -> np.ndarray:
    """One slice (rows, columns), rescaled with its own slope and intercept (by GDCM, which gives a
    float type for a fractional slope or intercept and an integer type otherwise)."""
    import SimpleITK as sitk

    try:
        with quiet_itk():
            img = sitk.ReadImage(str(h.path))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1][:120] if str(e).strip() else type(e).__name__
        raise DicomSeriesError(h.path, f"pixel data cannot be decoded ({reason})") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise DicomSeriesError(h.path, f"{img.GetNumberOfComponentsPerPixel()} values per pixel (colour image); "
                                       "expected a greyscale slice")
    arr = sitk.GetArrayFromImage(img)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != h.size:
        raise DicomSeriesError(h.path, f"pixel data of shape {arr.shape}, expected one slice of {h.size}")
    return arr


def _common_dtype(slices: Sequence[np.ndarray]) -> np.dtype:
    """int16 (or int32) when every value of every slice is an integer that fits, else float32."""
    lo, hi = min(float(a.min()) for a in slices), max(float(a.max()) for a in slices)
    if all(np.issubdtype(a.dtype, np.integer) or bool(np.all(np.mod(a, 1) == 0)) for a in slices):
        for t in (np.int16, np.int32):
            if lo >= np.iinfo(t).min and hi <= np.iinfo(t).max:
                return np.dtype(t)
    return np.dtype(np.float32)


def read_series(folder: PathLike, files: Optional[Sequence[PathLike]] = None, tilt: str = "resample"):
    """(SimpleITK image, SeriesLayout) of one series; see the module doc. Raises DicomSeriesError."""
    import SimpleITK as sitk

    lay = series_layout(folder, files, tilt)
    slices = [_slice_pixels(h) for h in lay.headers]
    if lay.sheared:
        from scipy import ndimage

        fill = min(float(a.min()) for a in slices)
        vol = np.empty((len(slices), *lay.canvas), np.float32)  # interpolated values
        rows, cols = slices[0].shape
        for k, (dy, dx) in enumerate(lay.shifts):
            canvas = np.full(lay.canvas, fill, np.float64)
            canvas[:rows, :cols] = slices[k]
            vol[k] = ndimage.shift(canvas, (dy, dx), order=1, mode="constant", cval=fill)
    else:
        vol = np.empty((len(slices), *slices[0].shape), _common_dtype(slices))
        for k, a in enumerate(slices):
            vol[k] = a
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing(lay.spacing)
    img.SetOrigin(lay.origin)
    img.SetDirection(lay.direction)
    return img, lay
