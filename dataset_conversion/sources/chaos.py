"""CHAOS, CT part: [CHAOS_]Train_Sets/CT/<id>/DICOM_anon/*.dcm + Ground/liver_GT_NNN.png.

PNG masks hold the liver as 1-bit (PIL mode "1", read as bool), 8-bit 0/255 or 8-bit 0/1. The i-th PNG (natural file-name order) belongs to the i-th
DICOM file (natural file-name order, as the dataset names them: i0000,0000b.dcm ...
liver_GT_000.png ...); its rows and columns are the DICOM rows and columns. Slices are then
ordered by position with their masks. Test_Sets cases (no Ground) are written unlabelled.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import SimpleITK as sitk

from ..base import Converter, SourceCase
from ..errors import BadInputError
from ..imageio import dicom_files, dicom_order, natural_key, read_dicom_series, read_png

LIVER_VALUE = 255


def liver_mask(m: np.ndarray, path: Path) -> np.ndarray:
    """The liver of one PNG mask: 1-bit (bool), 8-bit 0/255 or 8-bit 0/1."""
    if m.dtype == bool:
        return m
    values = set(np.unique(m).tolist())
    for liver in (LIVER_VALUE, 1):
        if values <= {0, liver}:
            return m == liver
    bad = sorted(values - {0, LIVER_VALUE}) if LIVER_VALUE in values else sorted(values - {0, 1})
    raise BadInputError(path, f"mask values {bad} are not defined (CHAOS CT: 1-bit, or 8-bit 0/255 or 0/1)")


class CHAOSConverter(Converter):
    key = "chaos_ct"
    prefix = "chaos"

    def discover(self, root: Path) -> List[SourceCase]:
        cases = []
        for sets, split in (("Train_Sets", "train"), ("Test_Sets", "test")):
            for ct in sorted({p for p in [root / sets / "CT", root / f"CHAOS_{sets}" / sets / "CT",
                                          *root.glob(f"*/{sets}/CT")] if p.is_dir()}):
                for d in sorted((d for d in ct.iterdir() if d.is_dir()), key=natural_key):
                    ground = d / "Ground"
                    c = SourceCase(f"{self.prefix}_{d.name}" + ("" if split == "train" else "_test"), d.name,
                                   d / "DICOM_anon", ground if ground.is_dir() else None, split)
                    if split == "train" and c.label is None:
                        c.problem = (str(d), "no Ground folder with PNG masks")
                    cases.append(c)
        return cases

    def load_image(self, case: SourceCase) -> sitk.Image:
        return read_dicom_series(case.image)[0]

    def load_label(self, case: SourceCase, image: sitk.Image) -> sitk.Image:
        files = dicom_files(case.image)
        pngs = sorted((p for p in case.label.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
                      key=natural_key)
        if len(pngs) != len(files):
            raise BadInputError(case.label, f"{len(pngs)} PNG masks for {len(files)} DICOM slices")
        mask_of = dict(zip(files, pngs))
        ordered = dicom_order(case.image, files)
        arr = np.zeros(image.GetSize()[::-1], np.uint8)
        for z, f in enumerate(ordered):
            m = read_png(mask_of[f])
            if m.shape != arr.shape[1:]:
                raise BadInputError(mask_of[f], f"mask is {m.shape[1]}x{m.shape[0]}, slice is "
                                                f"{arr.shape[2]}x{arr.shape[1]}")
            arr[z] = liver_mask(m, mask_of[f])
        lab = sitk.GetImageFromArray(arr)
        lab.CopyInformation(image)
        return lab
