"""FLARE22 / FLARE23: images|imagesTr/<name>_0000.nii.gz + labels|labelsTr/<name>.nii.gz.

FLARE23 as shipped: imagesTr2200/FLARE23_NNNN_0000.nii.gz + labelsTr2200/FLARE23_NNNN.nii.gz,
and unlabeledTr1800/FLARE23_NNNN[_0000].nii.gz (written unlabelled, to imagesTs); the
`images|imagesTr` + `labels|labelsTr` names are accepted too.

FLARE23 labels are partial and differ per case. Rule used here: a case annotates exactly the
organ classes whose label ids occur in its label file; every other class is unknown for that case
(recorded in annotated_classes.json). FLARE23's lesion label (14) is pan-cancer: each lesion
component is given to the organ that surrounds most of it (a one-voxel shell) and becomes that
organ's tumour class (liver_tumor, kidney_tumor, pancreas_tumor); lesions elsewhere stay the
generic 'tumor'. Lesions are marked in only some of the tumours of a case, so these tumour classes
are partial (positive-only): never listed as annotated, declared in `partial_classes`.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from scipy import ndimage

from suprem_nnunet.labels import BY_NAME, host_of
from suprem_nnunet.labels.sources import sides_of

from ..base import Converter, SourceCase, dedupe, list_files, pair, require_dir
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
    image_dirs: Tuple[str, ...] = ("images", "imagesTr")
    label_dirs: Tuple[str, ...] = ("labels", "labelsTr")
    unlabelled_dirs: Tuple[str, ...] = ()

    def _case_id(self, sid: str) -> str:
        last = sid.split("_")[-1]
        return f"{self.prefix}_{last if last.isdigit() else sid}"

    def discover(self, root: Path) -> List[SourceCase]:
        unl_dir = next((root / n for n in self.unlabelled_dirs if (root / n).is_dir()), None)
        present = [n for n in self.image_dirs if (root / n).is_dir()]
        cases: List[SourceCase] = []
        if present or unl_dir is None:
            img_dir = require_dir(root, *self.image_dirs)
            lab_dir = next((root / n for n in self.label_dirs if (root / n).is_dir()), root / self.label_dirs[0])
            imgs = {k[:-5]: v for k, v in list_files(img_dir, r".+_0000").items()}
            labs = list_files(lab_dir, r".+")
            cases = pair(imgs, labs, self.prefix, "train", labels_required=self.labelled_only, case_id=self._case_id)
        if unl_dir is not None:  # unlabelled scans, named with or without the '_0000' channel suffix
            unl = {k[:-5] if k.endswith("_0000") else k: v for k, v in list_files(unl_dir, r".+").items()}
            cases += pair(unl, {}, self.prefix, "unlabelled", labels_required=False, case_id=self._case_id)
        return dedupe(cases)


class FLARE22Converter(FLAREConverter):
    key, prefix = "flare22", "flare22"


class FLARE23Converter(FLAREConverter):
    key, prefix = "flare23", "flare23"
    annotation = "present"
    labelled_only = False
    image_dirs = ("imagesTr2200", "images", "imagesTr")
    label_dirs = ("labelsTr2200", "labels", "labelsTr")
    unlabelled_dirs = ("unlabeledTr1800", "unlabelTr1800", "unlabeled", "unlabelled")
    partial_note = ("FLARE23 marks lesions in only a subset of the tumours of a case: labelled lesion voxels are "
                    "tumour, unlabelled voxels are unknown for these classes (not background)")

    @cached_property
    def organ_tumors(self) -> Dict[str, str]:
        return {c: organ_tumor(c) for c in self.mapper.classes if c != GENERIC_TUMOR}

    @property
    def partial_classes(self) -> Tuple[str, ...]:  # every class the lesion label (14) can become
        return tuple(unified_order([GENERIC_TUMOR, *self.organ_tumors.values()]))

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
