"""RSNA 2023 Abdominal Trauma Detection: train_images/<patient>/<series>/<n>.dcm plus, for the
segmented subset, segmentations/<series>.nii (1 liver, 2 spleen, 3 left kidney, 4 right kidney,
5 bowel).

The NIfTI segmentations store their voxels in another axis order/orientation than the DICOM
series; they are aligned by their header geometry (axis permutation and flips, no resampling)
and a segmentation whose physical grid differs from the series is reported as a mismatch.
Series without a segmentation are listed as excluded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import SimpleITK as sitk

from ..base import Converter, SourceCase, list_files, require_dir
from ..imageio import natural_key, read_dicom_series


class RSNA2023Converter(Converter):
    key = "rsna2023"
    prefix = "rsna"

    def discover(self, root: Path) -> List[SourceCase]:
        images = require_dir(root, "train_images")
        segs = list_files(root / "segmentations", r"\d+")
        series: Dict[str, Path] = {}
        for patient in sorted((p for p in images.iterdir() if p.is_dir()), key=natural_key):
            for s in sorted((s for s in patient.iterdir() if s.is_dir()), key=natural_key):
                series[s.name] = s
        cases = []
        for sid in sorted(set(series) | set(segs), key=int):
            img, seg = series.get(sid), segs.get(sid)
            patient = img.parent.name if img is not None else "unknown"
            c = SourceCase(f"{self.prefix}_{patient}_{sid}", f"{patient}/{sid}", img, seg)
            if img is None:
                c.problem = (str(seg), "segmentation has no matching DICOM series")
            elif seg is None:
                c.skip_reason = "series has no segmentation"
            cases.append(c)
        return cases

    def load_image(self, case: SourceCase) -> sitk.Image:
        return read_dicom_series(case.image)[0]
