"""KiTS19/21/23: [data|dataset/]case_XXXXX/imaging.nii.gz + segmentation.nii.gz.

KiTS stores voxel axes as (z, y, x) with an affine that says so (IPL); the geometry is taken from
the header and the case is reoriented to LPS, so nothing is assumed about the array order. The
kidney label covers both kidneys and is split by the patient's side (tumour and cyst voxels
count as kidney when deciding a component's side). KiTS19 cases 210-299 are its test set
(no segmentation) and are written unlabelled.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

from ..base import Converter, SourceCase
from ..imageio import natural_key


class KiTSConverter(Converter):
    seg_names: Tuple[str, ...] = ("segmentation.nii.gz",)
    first_test_case = 10 ** 9  # case number from which a missing segmentation is expected

    def discover(self, root: Path) -> List[SourceCase]:
        base = next((b for b in (root / "data", root / "dataset", root) if any(b.glob("case_*"))), root)
        cases = []
        for d in sorted(base.glob("case_*"), key=natural_key):
            if not d.is_dir() or not re.fullmatch(r"case_\d+", d.name):
                continue
            sid = d.name[5:]
            img = d / "imaging.nii.gz"
            seg = next((d / n for n in self.seg_names if (d / n).is_file()), None)
            c = SourceCase(f"{self.prefix}_{sid}", d.name, img if img.is_file() else None, seg, "train")
            if c.image is None:
                c.problem = (str(seg or d), "no imaging.nii.gz for this case")
            elif seg is None:
                if int(sid) >= self.first_test_case:
                    c.split = "test"
                else:
                    c.problem = (str(img), f"image has no matching label ({' or '.join(self.seg_names)})")
            cases.append(c)
        return cases


class KiTS19Converter(KiTSConverter):
    key, prefix, first_test_case = "kits19", "kits19", 210


class KiTS21Converter(KiTSConverter):
    key, prefix = "kits21", "kits21"
    seg_names = ("segmentation.nii.gz", "aggregated_MAJ_seg.nii.gz")


class KiTS23Converter(KiTSConverter):
    key, prefix = "kits23", "kits23"
