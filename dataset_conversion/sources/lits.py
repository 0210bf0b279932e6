"""LiTS: volume-N.nii + segmentation-N.nii (in any sub-folders, e.g. 'Training Batch 1'),
test-volume-N.nii unlabelled. MSD Task03 Liver holds the same scans (see merge.py)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

from ..base import NII, Converter, SourceCase, pair, strip_ext
from ..errors import BadInputError
from ..imageio import natural_key


def find_numbered(root: Path, pattern: str) -> Dict[str, Path]:
    """{number: path} of NIfTI files anywhere below `root` whose stem is `pattern` (one group)."""
    out: Dict[str, Path] = {}
    for p in sorted(root.rglob("*"), key=natural_key):
        if p.name.startswith(".") or not p.is_file() or not p.name.lower().endswith(NII):
            continue
        m = re.fullmatch(pattern, strip_ext(p.name))
        if m:
            if m.group(1) in out:
                raise BadInputError(p, f"duplicate of {out[m.group(1)]}")
            out[m.group(1)] = p
    return out


class LiTSConverter(Converter):
    key = "lits"
    prefix = "lits"

    def discover(self, root: Path) -> List[SourceCase]:
        cases = pair(find_numbered(root, r"volume-(\d+)"), find_numbered(root, r"segmentation-(\d+)"),
                     self.prefix, "train")
        cases += pair(find_numbered(root, r"test-volume-(\d+)"), {}, self.prefix, "test", labels_required=False,
                      case_id=lambda s: f"{self.prefix}_test{s}")
        for c in cases:
            c.source_id = f"{'test-' if c.split == 'test' else ''}volume-{c.source_id}"
        return cases
