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


def series_to_nifti(folder: Union[str, Path], dest: Union[str, Path], series_uid: Optional[str] = None) -> Path:
    """Read one DICOM series (SimpleITK's series reader, slices sorted by position) and write it to `dest`."""
    import SimpleITK as sitk

    uid, files = pick_series(folder, series_uid)
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
