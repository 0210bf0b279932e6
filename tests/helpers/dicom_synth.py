"""Synthetic DICOM CT series written by pydicom, and a pydicom reference reader (test helpers)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np


def write_series(folder: Path, stored: np.ndarray, ipps: Sequence[Sequence[float]],
                 iop: Sequence[float] = (1, 0, 0, 0, 1, 0), pixel_spacing=(0.8, 0.7),
                 slopes: Optional[Sequence[float]] = None, intercepts: Optional[Sequence[float]] = None,
                 names: Optional[Sequence[str]] = None, tilt_tag: Optional[float] = None,
                 series_uid: Optional[str] = None) -> List[Path]:
    """One CT slice file per `stored[k]` (int16, rows x columns) at ImagePositionPatient `ipps[k]`;
    InstanceNumber k + 1; file names `names[k]` (default 'k.dcm')."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = series_uid or generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in range(stored.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / (names[k] if names else f"{k:03d}.dcm")
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "SYNTH", "Synthetic^Phantom"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "A1", "1"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.Manufacturer, ds.ReferringPhysicianName, ds.PatientBirthDate, ds.PatientSex = "SYNTH", "", "", "O"
        ds.ImagePositionPatient = [float(v) for v in ipps[k]]
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = 2.5
        if tilt_tag is not None:
            ds.GantryDetectorTilt = tilt_tag
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope = slopes[k] if slopes is not None else 1
        ds.RescaleIntercept = intercepts[k] if intercepts is not None else 0
        ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(stored[k].astype(np.int16)).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        files.append(path)
    return files


def reference_read(files: Sequence[Path]):
    """pydicom reference: (values (n, rows, cols) float64, physical points (n, rows, cols, 3) in mm),
    each slice with its own slope/intercept and each pixel at IPP + c * dc * row_dir + r * dr * col_dir."""
    import pydicom

    values, points = [], []
    for f in files:
        ds = pydicom.dcmread(str(f))
        values.append(ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        dr, dc = (float(v) for v in ds.PixelSpacing)
        r, c = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
        points.append(np.array([float(v) for v in ds.ImagePositionPatient]) + (c * dc)[..., None] * iop[:3]
                      + (r * dr)[..., None] * iop[3:])
    return np.stack(values), np.stack(points)


def sample(img, points: np.ndarray) -> np.ndarray:
    """Values of a SimpleITK image at physical `points` (..., 3): linear within each slice, the
    slice index rounded (points lie on slices); NaN outside the image."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img).astype(np.float64)
    d = np.array(img.GetDirection()).reshape(3, 3)
    idx = (points - np.array(img.GetOrigin())) @ d / np.array(img.GetSpacing())  # (x, y, z) continuous
    idx = np.where(np.abs(idx - np.rint(idx)) < 1e-6, np.rint(idx), idx)  # on a voxel centre: no mixing
    x, y, z = idx[..., 0], idx[..., 1], np.rint(idx[..., 2]).astype(int)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    nz, ny, nx = arr.shape
    inside = (z >= 0) & (z < nz) & (x0 >= 0) & (y0 >= 0) & (x0 + (fx > 1e-9) < nx) & (y0 + (fy > 1e-9) < ny)
    zc, x0c, y0c = np.clip(z, 0, nz - 1), np.clip(x0, 0, nx - 1), np.clip(y0, 0, ny - 1)
    x1c, y1c = np.clip(x0 + 1, 0, nx - 1), np.clip(y0 + 1, 0, ny - 1)
    v = (arr[zc, y0c, x0c] * (1 - fx) * (1 - fy) + arr[zc, y0c, x1c] * fx * (1 - fy)
         + arr[zc, y1c, x0c] * (1 - fx) * fy + arr[zc, y1c, x1c] * fx * fy)
    return np.where(inside, v, np.nan)
