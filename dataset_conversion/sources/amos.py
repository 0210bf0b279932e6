"""AMOS22: imagesTr|labelsTr|imagesVa|labelsVa|imagesTs/amos_XXXX.nii.gz; ids above 500 are MRI."""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..base import Converter, SourceCase, list_files, pair

MRI_FIRST_ID = 501  # AMOS numbers CT scans 1..500 and MRI scans from 501


class AMOS22Converter(Converter):
    key = "amos22"
    prefix = "amos"

    def discover(self, root: Path) -> List[SourceCase]:
        cases: List[SourceCase] = []
        for split, img_dir, lab_dir in (("train", "imagesTr", "labelsTr"), ("validation", "imagesVa", "labelsVa"),
                                        ("test", "imagesTs", None)):
            imgs = {k[5:]: v for k, v in list_files(root / img_dir, r"amos_\d+").items()}
            labs = {k[5:]: v for k, v in list_files(root / lab_dir, r"amos_\d+").items()} if lab_dir else {}
            cases += pair(imgs, labs, self.prefix, split, labels_required=lab_dir is not None)
        for c in cases:
            if int(c.source_id) >= MRI_FIRST_ID:
                c.skip_reason, c.problem = "MRI scan (AMOS case ids above 500 are MRI)", None
        return cases
