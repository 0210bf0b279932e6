"""A case as the encoder sees it: preprocessed like the pre-training data, cut to one patch.

Preprocessing is the pre-trained model's own: nnU-Net's preprocessor with the checkpoint's plans
(spacing, crop, CT normalisation) for our models, the SuPreM preset (`zoo.predict.preprocess_ct`:
RAS, 1.5 mm, [-175, 250] HU -> [0, 1]) for releases.

Region of interest: the patch is centred on the centroid of the pancreas and pancreatic lesion
voxels of the case's label map (classes `pancreas`, `pancreas_tumor`, the sub-types' segmentation
classes, or any class the label table hosts in the pancreas; named by the dataset.json next to the
label folder, else every foreground voxel counts), resampled with the image. Without a label map,
or with no such voxel, the patch is centred on the preprocessed volume's centre (logged).

ROI masking (on by default): with a label map, voxels more than `ROI_MARGIN` voxels away from the
pancreas / lesion are set to the volume's minimum, so the encoder sees the pancreas, its lesion and
a rim of surroundings but not the bright vessels and organs around it (the whole-patch max would
otherwise be the aorta's). A real user's mask is a pancreas segmentation (its label includes the
lesion, as real organ labels do), e.g. from `suprem_predict`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Set, Tuple

import numpy as np

from ..labels import canonical, host_of
from ..synth.subtype_lesion import SUBTYPE_SEG_CLASSES
from .model import EncoderSpec

log = logging.getLogger(__name__)

ROI_CLASSES = ("pancreas", "pancreas_tumor", *SUBTYPE_SEG_CLASSES.values())
ROI_MARGIN = 2  # voxels kept around the ROI when masking


@dataclass
class Case:
    """A preprocessed case: volume (C, *spatial) in network axis order and the ROI centre (voxels)."""

    name: str
    volume: np.ndarray
    center: np.ndarray


def roi_label_ids(seg_file: Optional[str]) -> Optional[Set[int]]:
    """Label ids of pancreas and pancreatic lesion classes, from the dataset.json next to the label
    folder of `seg_file`; None: no such file or none of these classes (every foreground id counts)."""
    if seg_file is None:
        return None
    dj = Path(seg_file).parent.parent / "dataset.json"
    if not dj.is_file():
        return None
    labels = json.loads(dj.read_text()).get("labels", {})
    ids = set()
    for name, value in labels.items():
        if name.lower() == "background" or not isinstance(value, int):
            continue
        c = canonical(name)
        if c in ROI_CLASSES or host_of(c) == "pancreas":
            ids.add(int(value))
    return ids or None


def roi_mask(seg: Optional[np.ndarray], ids: Optional[Set[int]]) -> Optional[np.ndarray]:
    """The ROI voxels of `seg` (None without a label map or when it has none)."""
    if seg is None:
        return None
    mask = np.isin(seg, sorted(ids)) if ids else seg > 0
    return mask if mask.any() else None


def roi_center(mask: Optional[np.ndarray], shape: Sequence[int], case: str, has_seg: bool = False) -> np.ndarray:
    """Centroid (voxel coordinates) of `mask`, or the centre of `shape`."""
    if mask is not None:
        return np.array([c.mean() for c in np.nonzero(mask)])
    if has_seg:
        log.info("%s: no pancreas or lesion voxel in its label map; the patch is centred on the volume", case)
    return (np.array(shape, float) - 1) / 2


def mask_outside(volume: np.ndarray, mask: np.ndarray, margin: int = ROI_MARGIN) -> np.ndarray:
    """`volume` (C, *spatial) with voxels farther than `margin` from `mask` set to its minimum."""
    from scipy import ndimage

    keep = ndimage.binary_dilation(mask, iterations=margin) if margin > 0 else mask
    return np.where(keep[None], volume, volume.min()).astype(np.float32)


class CasePreprocessor:
    """Preprocess cases the way `spec`'s pre-training did."""

    def __init__(self, spec: EncoderSpec, mask_roi: bool = True) -> None:
        self.spec = spec
        self.mask_roi = mask_roi
        if spec.plans is not None:
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

            from ..preprocessing.plans_manager import as_suprem

            self.pm = as_suprem(PlansManager(spec.plans))
            self.cm = self.pm.get_configuration(spec.configuration)

    def __call__(self, case: str, image_files: List[str], seg_file: Optional[str] = None) -> Case:
        if self.spec.plans is not None:
            from contextlib import redirect_stdout
            import io

            with redirect_stdout(io.StringIO()):  # nnU-Net prints per case
                data, seg, _ = self.cm.preprocessor_class(verbose=False).run_case(
                    list(image_files), seg_file, self.pm, self.cm, self.spec.dataset_json)
            seg_arr = seg[0] if seg_file is not None else None
            if seg_arr is not None:
                seg_arr = np.where(seg_arr < 0, 0, seg_arr)
        else:
            import SimpleITK as sitk

            from ..zoo.predict import preprocess_ct

            arr, grid = preprocess_ct(sitk.ReadImage(str(image_files[0])))
            data = arr[None]
            seg_arr = None
            if seg_file is not None:
                lab = sitk.Resample(sitk.ReadImage(str(seg_file)), grid, sitk.Transform(), sitk.sitkNearestNeighbor)
                seg_arr = sitk.GetArrayFromImage(lab).transpose(2, 1, 0)  # (x, y, z) like the image array
        data = np.asarray(data, np.float32)
        mask = roi_mask(seg_arr, roi_label_ids(seg_file))
        if self.mask_roi and mask is not None:
            data = mask_outside(data, mask)
        return Case(case, data, roi_center(mask, data.shape[1:], case, seg_arr is not None))


def crop_patch(volume: np.ndarray, center: Sequence[float], patch: Sequence[int],
               shift: Optional[Sequence[int]] = None) -> np.ndarray:
    """The `patch`-sized block of `volume` (C, *spatial) centred on `center` (+ `shift` voxels),
    padded with the volume's minimum where it leaves the volume."""
    patch = [int(p) for p in patch]
    start = [int(np.floor(c - p / 2 + 0.5)) + (int(s) if shift is not None else 0)
             for c, p, s in zip(center, patch, shift if shift is not None else [0] * len(patch))]
    out = np.full((volume.shape[0], *patch), volume.min(), np.float32)
    src, dst = [], []
    for st, p, n in zip(start, patch, volume.shape[1:]):
        lo, hi = max(st, 0), min(st + p, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - st, hi - st))
    out[(slice(None), *dst)] = volume[(slice(None), *src)]
    return out


def preprocess_cases(pre: CasePreprocessor, images: dict, segs: Optional[dict] = None) -> List[Case]:
    """Every case of {case: image files} (with {case: label file or None}), in the given order."""
    return [pre(c, files, (segs or {}).get(c)) for c, files in images.items()]


def patch_for(spec: EncoderSpec, patch: Optional[Sequence[int]]) -> Tuple[int, ...]:
    """The patch size: `patch` when given (checked against the backbone's divisibility), else the plans'."""
    from ..networks.registry import get_backbone

    if patch is None:
        return spec.default_patch
    div = get_backbone(spec.backbone).divisible_by
    if div is None and spec.plans is not None:  # nnU-Net topology: the product of the strides
        strides = spec.plans["configurations"][spec.configuration]["architecture"]["arch_kwargs"].get("strides", [])
        div = int(np.prod([max(s) if isinstance(s, (list, tuple)) else int(s) for s in strides]))
    bad = [int(p) for p in patch if div and int(p) % div]
    if bad or min(int(p) for p in patch) < 1:
        raise ValueError(f"--patch {list(patch)}: every side must be a positive multiple of {div} for the "
                         f"{spec.backbone} encoder")
    return tuple(int(p) for p in patch)
