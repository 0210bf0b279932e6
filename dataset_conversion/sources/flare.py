"""FLARE22 / FLARE23: images|imagesTr/<name>_0000.nii.gz + labels|labelsTr/<name>.nii.gz.

FLARE23 labels are partial and differ per case. Rule used here: a case annotates exactly the
classes whose label ids occur in its label file; every other class is unknown for that case
(recorded in annotated_classes.json). FLARE23 images without a label file are written
unlabelled. FLARE23's lesion label (14) is pan-cancer: each lesion component is given to the
organ that surrounds most of it (a one-voxel shell) and becomes that organ's tumour class
(liver_tumor, kidney_tumor, pancreas_tumor); lesions elsewhere stay the generic 'tumor'.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Dict, List

import numpy as np
from scipy import ndimage

from suprem_nnunet.labels import BY_NAME, host_of
from suprem_nnunet.labels.sources import sides_of

from ..base import Converter, SourceCase, list_files, pair, require_dir
from ..labelspace import remap_lut, unified_order
from ..sides import Geometry

GENERIC_TUMOR = "tumor"


def organ_tumor(organ: str) -> str:
    """The tumour class of an organ ('kidney_left' -> 'kidney_tumor'), or the generic one."""
    base = organ
    for side in ("_left", "_right"):
        if organ.endswith(side) and sides_of(organ[: -len(side)]):
            base = organ[: -len(side)]
    t = f"{base}_tumor"
    return t if t in BY_NAME and host_of(t) == base else GENERIC_TUMOR


class FLAREConverter(Converter):
    labelled_only = True

    def discover(self, root: Path) -> List[SourceCase]:
        img_dir = require_dir(root, "images", "imagesTr")
        lab_dir = next((root / n for n in ("labels", "labelsTr") if (root / n).is_dir()), root / "labels")
        imgs = {k[:-5]: v for k, v in list_files(img_dir, r".+_0000").items()}
        labs = list_files(lab_dir, r".+")
        return pair(imgs, labs, self.prefix, "train", labels_required=self.labelled_only,
                    case_id=lambda s: f"{self.prefix}_{s.split('_')[-1] if s.split('_')[-1].isdigit() else s}")


class FLARE22Converter(FLAREConverter):
    key, prefix = "flare22", "flare22"


class FLARE23Converter(FLAREConverter):
    key, prefix = "flare23", "flare23"
    annotation = "present"
    labelled_only = False

    @cached_property
    def organ_tumors(self) -> Dict[str, str]:
        return {c: organ_tumor(c) for c in self.mapper.classes if c != GENERIC_TUMOR}

    @property
    def classes(self) -> List[str]:
        return unified_order(list(self.mapper.classes) + list(self.organ_tumors.values()))

    def finish(self, out: np.ndarray, src: np.ndarray, geo: Geometry, image: np.ndarray) -> np.ndarray:
        classes = self.classes
        out = remap_lut(self.mapper.classes, classes)[out]
        generic = classes.index(GENERIC_TUMOR) + 1
        comps, n = ndimage.label(out == generic, structure=np.ones((3, 3, 3), bool))
        for i, sl in enumerate(ndimage.find_objects(comps), start=1):
            sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
            comp = comps[sl] == i
            shell = ndimage.binary_dilation(comp, np.ones((3, 3, 3), bool)) & ~comp
            around = out[sl][shell]
            around = around[(around > 0) & (around != generic)]
            if around.size:
                organ = classes[int(np.bincount(around).argmax()) - 1]
                tumor = self.organ_tumors.get(organ, GENERIC_TUMOR)
                out[sl][comp] = classes.index(tumor) + 1
        return out
