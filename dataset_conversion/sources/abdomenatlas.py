"""AbdomenAtlas 1.1: BDMAP_XXXXXXXX/ct.nii.gz + segmentations/<class>.nii.gz (one binary mask
per class, 25 classes in the public release) and/or combined_labels.nii.gz (atlas ids 1..32).

Per-class masks are preferred. A case annotates the classes it has mask files for; with only
combined_labels.nii.gz it annotates the 25 anatomical structures plus any tumour id present.
Tumour masks are painted last so they override their organ.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

import numpy as np
import SimpleITK as sitk

from suprem_nnunet.labels import ATLAS_CLASSES, canonical, is_known

from ..base import Converter, SourceCase
from ..errors import BadInputError
from ..imageio import natural_key
from ..masks import paint_masks

N_ANATOMICAL = 25


class AbdomenAtlasConverter(Converter):
    key = "abdomenatlas11"
    prefix = "atlas"

    def discover(self, root: Path) -> List[SourceCase]:
        cases = []
        for d in sorted(root.rglob("BDMAP_*"), key=natural_key):
            if not d.is_dir() or not re.fullmatch(r"BDMAP_\w+", d.name):
                continue
            ct = d / "ct.nii.gz"
            seg = d / "segmentations"
            lab = seg if seg.is_dir() else d / "combined_labels.nii.gz"
            c = SourceCase(f"{self.prefix}_{d.name[6:]}", d.name, ct, lab if lab.exists() else None)
            if not ct.is_file():
                c.problem = (str(d), "no ct.nii.gz")
            elif c.label is None:
                c.problem = (str(d), "neither segmentations/ nor combined_labels.nii.gz")
            cases.append(c)
        return cases

    def _mask_files(self, folder: Path):
        files = []
        for p in sorted(folder.iterdir(), key=natural_key):
            if p.name.startswith(".") or not p.name.endswith(".nii.gz"):
                continue
            name = p.name[: -len(".nii.gz")]
            u = canonical(name) if is_known(name) else None
            if u not in ATLAS_CLASSES:
                raise BadInputError(p, f"{name!r} is not an AbdomenAtlas 1.1 class")
            files.append((ATLAS_CLASSES.index(u) + 1, p))
        if not files:
            raise BadInputError(folder, "no mask files")
        return sorted(files)  # atlas order: the 7 tumours (26..32) come last

    def load_label(self, case: SourceCase, image: sitk.Image) -> sitk.Image:
        if case.label.is_dir():
            return paint_masks(self._mask_files(case.label), image, case.image)
        return super().load_label(case, image)

    def annotated(self, case: SourceCase, src: np.ndarray, out: np.ndarray) -> List[str]:
        if case.label.is_dir():
            return [ATLAS_CLASSES[i - 1] for i, _ in self._mask_files(case.label)]
        present = set(np.flatnonzero(np.bincount(src.ravel())).tolist())
        return [n for i, n in enumerate(ATLAS_CLASSES, 1) if i <= N_ANATOMICAL or i in present]
