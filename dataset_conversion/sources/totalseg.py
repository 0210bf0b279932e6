"""TotalSegmentator v1 (104 classes) / v2 (117 classes) datasets: sXXXX/ct.nii.gz +
sXXXX/segmentations/<class>.nii.gz, and meta.csv (';'-separated, columns image_id and split).

Option `groups` selects target-task groups (organs, vertebrae, cardiac, muscles, ribs; default
all). Lung lobes merge into lung_left/lung_right and kidney cysts into kidney_cyst; classes
outside the unified 32 keep their own (normalised) names.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, List, Sequence

import SimpleITK as sitk

from suprem_nnunet.labels import TOTALSEG_GROUPS, totalseg_classes, totalseg_group
from suprem_nnunet.labels.sources import LabelMap

from ..base import Converter, SourceCase
from ..errors import BadInputError, ConversionError
from ..imageio import natural_key
from ..masks import paint_masks


def parse_groups(value) -> List[str]:
    """Groups from 'organs,ribs' or a list; validated, in TotalSegmentator's group order."""
    if value is None:
        return list(TOTALSEG_GROUPS)
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [s.strip().lower() for s in items if s.strip()]
    bad = [g for g in items if g not in TOTALSEG_GROUPS]
    if bad or not items:
        raise ConversionError(f"unknown TotalSegmentator group(s) {bad or items}; choose from {', '.join(TOTALSEG_GROUPS)}")
    return [g for g in TOTALSEG_GROUPS if g in items]


def read_meta(path: Path) -> Dict[str, str]:
    """{image_id: split} from meta.csv."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInputError(path, f"unreadable meta.csv ({type(e).__name__})") from None
    if rows and not {"image_id", "split"} <= set(rows[0]):
        raise BadInputError(path, f"expected ';'-separated columns image_id and split, got {list(rows[0])}")
    return {r["image_id"].strip(): r["split"].strip() for r in rows}


class TotalSegConverter(Converter):
    version = 2
    option_names = ("groups",)

    @property
    def groups(self) -> List[str]:
        return parse_groups(self.options.get("groups"))

    @property
    def label_map(self) -> LabelMap:
        names = totalseg_classes(self.version)
        groups = set(self.groups)
        return {i + 1: n for i, n in enumerate(names) if totalseg_group(n, self.version) in groups}

    def discover(self, root: Path) -> List[SourceCase]:
        meta = read_meta(root / "meta.csv") if (root / "meta.csv").is_file() else {}
        cases = []
        for d in sorted(root.iterdir(), key=natural_key):
            if not d.is_dir() or not re.fullmatch(r"s\d+", d.name):
                continue
            ct, seg = d / "ct.nii.gz", d / "segmentations"
            c = SourceCase(f"{self.prefix}_{d.name}", d.name, ct, seg, meta.get(d.name, "train"))
            if not ct.is_file():
                c.problem = (str(d), "no ct.nii.gz")
            elif not seg.is_dir():
                c.problem = (str(d), "no segmentations folder")
            cases.append(c)
        return cases

    def _mask_files(self, folder: Path) -> Sequence:
        files = []
        for sid, name in sorted(self.label_map.items()):
            p = folder / f"{name}.nii.gz"
            if not p.is_file():
                raise BadInputError(p, f"mask of TotalSegmentator v{self.version} class {name!r} is missing")
            files.append((sid, p))
        return files

    def load_label(self, case: SourceCase, image: sitk.Image) -> sitk.Image:
        return paint_masks(self._mask_files(case.label), image, case.image)


class TotalSegV1Converter(TotalSegConverter):
    key, prefix, version = "totalseg_v1", "tsv1", 1


class TotalSegV2Converter(TotalSegConverter):
    key, prefix, version = "totalseg_v2", "tsv2", 2
