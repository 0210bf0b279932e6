"""AbdomenCT-1K: Case_XXXXX_0000.nii.gz (images) + Case_XXXXX.nii.gz (masks) in any sub-folders;
label 2 holds both kidneys and is split by the patient's side."""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..base import Converter, SourceCase, pair
from .lits import find_numbered


class AbdomenCT1KConverter(Converter):
    key = "abdomenct1k"
    prefix = "abdomenct1k"

    def discover(self, root: Path) -> List[SourceCase]:
        cases = pair(find_numbered(root, r"Case_(\d+)_0000"), find_numbered(root, r"Case_(\d+)"), self.prefix)
        for c in cases:
            c.source_id = f"Case_{c.source_id}"
        return cases
