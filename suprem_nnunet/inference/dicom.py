"""DICOM series input: a folder holding one series (or several, picked by series UID) becomes one case.

Reading is `dataset.dicom_io.read_series` (headers by pydicom, per-slice rescale, a gantry-tilted
series resampled onto an orthogonal grid, one-line errors, no ITK warnings on the terminal).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Tuple, Union

from ..dataset.dicom_io import find_series, quiet_itk, read_series
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)


def dicom_series(folder: Union[str, Path]) -> List[str]:
    """Series instance UIDs of the DICOM image files directly in `folder` (empty when there are none)."""
    return sorted(find_series(folder))


def pick_series(folder: Union[str, Path], series_uid: Optional[str] = None) -> Tuple[str, List[Path]]:
    """(series UID, its files). Several series and no `series_uid`: ValueError listing them."""
    series = find_series(folder)
    uids = sorted(series)
    if not uids:
        raise MissingFileError(f"{folder}: no DICOM series in this folder")
    if series_uid is None:
        if len(uids) > 1:
            raise InputError(f"{folder}: {len(uids)} DICOM series; pick one with --series-uid "
                             f"({', '.join(uids)})")
        series_uid = uids[0]
    elif series_uid not in uids:
        raise InputError(f"{folder}: no DICOM series {series_uid!r} (series here: {', '.join(uids)})")
    return series_uid, series[series_uid]


def series_to_nifti(folder: Union[str, Path], dest: Union[str, Path], series_uid: Optional[str] = None) -> Path:
    """Read one DICOM series (see `dataset.dicom_io.read_series`) and write it to `dest` (NIfTI)."""
    import SimpleITK as sitk

    uid, files = pick_series(folder, series_uid)
    img, layout = read_series(folder, files)  # DicomSeriesError (a ValueError): one line naming the file or folder
    dest = Path(dest)
    tmp = dest.with_name(f".tmp-{dest.name}")
    with quiet_itk():
        sitk.WriteImage(img, str(tmp), useCompression=True)
    tmp.replace(dest)
    log.info("DICOM series %s (%d slices) from %s", uid, len(layout.headers), folder)
    return dest
