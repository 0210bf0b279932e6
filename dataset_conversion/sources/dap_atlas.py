"""DAP Atlas: a flat folder of multi-label masks AutoPET_<subject>_<uid5>.nii.gz (ids from the
DAP Atlas label_name.csv; 1 'Left to annotate' becomes background) and the AutoPET CTs
(NIfTI release: PETCT_<subject>/<study folder whose name ends in the study UID's last 5 digits>/
CT.nii.gz). Option `images`: where the AutoPET tree lies (default: INPUT_DIR).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

from ..base import Converter, SourceCase, list_files
from ..imageio import natural_key


class DAPAtlasConverter(Converter):
    key = "dap_atlas"
    prefix = "dap"
    option_names = ("images",)

    def discover(self, root: Path) -> List[SourceCase]:
        mask_dir = next((d for d in (root, root / "ATLAS_DATASET", root / "labels")
                         if list_files(d, r"AutoPET_.+")), root)
        masks = list_files(mask_dir, r"AutoPET_[0-9A-Za-z]+_\d{5}")
        ct_root = Path(self.options.get("images") or root)
        subjects: Dict[str, Path] = {}
        for d in sorted(ct_root.rglob("PETCT_*"), key=natural_key):
            if d.is_dir():
                subjects.setdefault(d.name[6:], d)
        cases = []
        for stem, mask in masks.items():
            _, subject, uid5 = stem.split("_")
            c = SourceCase(f"{self.prefix}_{subject}_{uid5}", stem, None, mask)
            studies = [s for s in subjects[subject].iterdir() if s.is_dir() and re.search(rf"{uid5}$", s.name)] \
                if subject in subjects else []
            ct = [s / "CT.nii.gz" for s in studies if (s / "CT.nii.gz").is_file()]
            if len(ct) == 1:
                c.image = ct[0]
            else:
                c.problem = (str(mask), f"{'no' if not ct else 'several'} AutoPET CT for this mask (looked for "
                                        f"PETCT_{subject}/*{uid5}/CT.nii.gz under {ct_root})")
            cases.append(c)
        return cases
