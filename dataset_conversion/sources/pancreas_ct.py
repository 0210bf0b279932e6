"""Pancreas-CT (NIH, TCIA): PANCREAS_00NN/<study>/<series>/*.dcm + label00NN.nii.gz (1 pancreas).

82 label files but 80 image series: PANCREAS_0025 and PANCREAS_0070 were removed from TCIA as
duplicates of other scans; their labels are listed as excluded, not as errors (and merge.py
drops them should an older download still contain the images). Labels are aligned to the DICOM
grid by their header geometry (reoriented, never resampled).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import SimpleITK as sitk

from ..base import Converter, SourceCase, pair
from ..imageio import natural_key, read_dicom_series
from .lits import find_numbered

#: Case numbers TCIA removed as duplicates (unverified against the TCIA page, see README).
REMOVED_DUPLICATES = ("0025", "0070")


class PancreasCTConverter(Converter):
    key = "pancreas_ct"
    prefix = "pancreasct"

    def discover(self, root: Path) -> List[SourceCase]:
        series: Dict[str, Path] = {}
        for d in sorted(root.rglob("PANCREAS_*"), key=natural_key):
            m = re.fullmatch(r"PANCREAS_(\d+)", d.name)
            if d.is_dir() and m:
                series[m.group(1)] = d
        cases = pair(series, find_numbered(root, r"label(\d+)"), self.prefix)
        for c in cases:
            c.source_id = f"PANCREAS_{c.source_id}"
            if c.source_id[-4:] in REMOVED_DUPLICATES:
                c.skip_reason, c.problem = "duplicate scan removed from Pancreas-CT upstream", None
        return cases

    def load_image(self, case: SourceCase) -> sitk.Image:
        return read_dicom_series(case.image)[0]
