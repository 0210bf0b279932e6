"""CT-ORG: [OrganSegmentations/]volume-N.nii.gz + labels-N.nii.gz (float labels); lungs and
kidneys are one label each and are split by the patient's side."""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..base import Converter, SourceCase, pair
from .lits import find_numbered


class CTORGConverter(Converter):
    key = "ctorg"
    prefix = "ctorg"

    def discover(self, root: Path) -> List[SourceCase]:
        cases = pair(find_numbered(root, r"volume-(\d+)"), find_numbered(root, r"labels-(\d+)"), self.prefix)
        for c in cases:
            c.source_id = f"volume-{c.source_id}"
        return cases
