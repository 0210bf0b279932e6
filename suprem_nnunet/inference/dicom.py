"""DICOM series input: a folder holding one series (or several, picked by series UID) becomes one case."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Tuple, Union

log = logging.getLogger(__name__)


def dicom_series(folder: Union[str, Path]) -> List[str]:
    """Series instance UIDs of the DICOM files directly in `folder` (empty when there are none)."""
    import SimpleITK as sitk

    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])


def pick_series(folder: Union[str, Path], series_uid: Optional[str] = None) -> Tuple[str, List[str]]:
    """(series UID, its files in slice order). Several series and no `series_uid`: ValueError listing them."""
    import SimpleITK as sitk

    uids = dicom_series(folder)
    if not uids:
        raise FileNotFoundError(f"{folder}: no DICOM series in this folder")
    if series_uid is None:
        if len(uids) > 1:
            raise ValueError(f"{folder}: {len(uids)} DICOM series; pick one with --series-uid "
                             f"({', '.join(uids)})")
        series_uid = uids[0]
    elif series_uid not in uids:
        raise ValueError(f"{folder}: no DICOM series {series_uid!r} (series here: {', '.join(uids)})")
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))
    return series_uid, files


def check_slice_spacing(folder: Union[str, Path], uid: str, files: List[str]) -> None:
    """ValueError when the slices of a series (in SimpleITK's order) are not evenly spaced along the
    slice normal: a missing slice (or a duplicate) that the series reader would silently close up."""
    import numpy as np
    import SimpleITK as sitk

    if len(files) < 3:
        return
    pos, normal = [], None
    for f in files:
        r = sitk.ImageFileReader()
        r.SetFileName(str(f))
        try:
            r.ReadImageInformation()
        except RuntimeError:
            raise ValueError(f"{f}: unreadable DICOM file in series {uid}") from None
        if normal is None:
            normal = np.asarray(r.GetDirection(), float).reshape(3, 3)[:, 2]
        pos.append(float(np.dot(r.GetOrigin(), normal)))
    gaps = np.abs(np.diff(pos))
    step = float(np.median(gaps))
    if gaps.min() < 1e-3 or gaps.max() > 1.5 * step:
        i = int(np.argmax(np.abs(gaps - step)))
        what = "duplicate slice" if gaps[i] < 1e-3 else "missing slice"
        raise ValueError(f"{folder}: DICOM series {uid}: {what}, {gaps[i]:.2f} mm between {Path(files[i]).name} "
                         f"and {Path(files[i + 1]).name} (slice step {step:.2f} mm)")


def series_to_nifti(folder: Union[str, Path], dest: Union[str, Path], series_uid: Optional[str] = None) -> Path:
    """Read one DICOM series (SimpleITK's series reader, slices sorted by position) and write it to `dest`."""
    import SimpleITK as sitk

    uid, files = pick_series(folder, series_uid)
    check_slice_spacing(folder, uid, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        img = reader.Execute()
    except RuntimeError as e:
        raise ValueError(f"{folder}: DICOM series {uid} cannot be read ({str(e).strip().splitlines()[-1][:120]})") from None
    if img.GetDimension() != 3:
        raise ValueError(f"{folder}: DICOM series {uid} is {img.GetDimension()}D, expected 3D")
    dest = Path(dest)
    sitk.WriteImage(img, str(dest), useCompression=True)
    log.info("DICOM series %s (%d slices) from %s", uid, len(files), folder)
    return dest
