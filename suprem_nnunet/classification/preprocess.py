"""A case as the encoder sees it: resampled like the pre-training data, windowed for
classification, masked to its region of interest and cut to one patch.

Geometry is the pre-trained model's own: nnU-Net's preprocessor with the checkpoint's plans
(transpose, crop, resampling to the plans' spacing) for our models, the SuPreM preset
(`zoo.predict.preprocess_ct`: RAS, 1.5 mm) for releases.

Intensities: a CT channel is not normalised with the plans' scheme (its clip window comes from
the pre-training set's labelled voxels, e.g. [27, 133] HU for a pancreas-only label set, which
puts fat, water and the floor of the window at one value) but with the classification window
`CLASSIFICATION_WINDOW_HU` = [-200, 300] HU scaled linearly to [0, 1]: fat (~-100 HU -> 0.2),
water / cyst (0-20 HU -> 0.40-0.44), soft tissue (40-60 HU -> 0.48-0.52) and enhancement
(100+ HU -> 0.6+) stay apart. (nnU-Net's encoders instance-normalise after their first
convolution, so an affine change of the input scale does not matter; clipping does.) Other
channels (MR, ...) keep the plans' normalisation.

Region of interest: the pancreas and pancreatic lesion voxels of the case's label map (classes
`pancreas`, `pancreas_tumor`, the sub-types' segmentation classes, or any class the label table
hosts in the pancreas; named by the dataset.json in or next to the label folder, else every
foreground voxel counts), resampled with the image: the ground truth, or a segmentation model's
prediction (`suprem_predict` writes dataset.json beside its outputs). The patch is centred on the
ROI's centroid.

ROI masking (on by default): voxels farther than `margin_mm` (default 0: the lesion and its host
organ, nothing else) from the ROI take the fill value, per channel the median of the ROI's
voxels (the organ's own level), and patches leaving the volume are padded with it. The encoder
then sees the lesion as what differs from its organ and no edge at the ROI's outline: with a
fill no tissue takes (-1 against tissue in [0, 1]) the outline is by far the strongest edge in
the patch, its shape and size vary from case to case, and the first instance norm scales the
whole patch by that contrast; on the test phantoms at difficulty 0 (tests/e2e/test_classification_learning.py,
seed 0) a classifier trained from scratch then stays at the chance loss (ln 4, AUC 0.48-0.68),
with the median fill it reaches AUC 0.88-1.00 on every sub-type. Without masking, patches are padded with the channel's
minimum. A case whose label map has no ROI voxel (or that has no label map) gets
`Case.roi = None`; masked classification does not score it (see `train.predict_scores`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..labels import canonical, host_of
from ..synth.subtype_lesion import SUBTYPE_SEG_CLASSES
from .model import EncoderSpec
from ..networks.registry import get_backbone
from ..zoo.predict import SUPREM_PREPROCESSING, preprocess_ct
from ..preprocessing.plans_manager import as_suprem
from ..errors import InputError

log = logging.getLogger(__name__)

ROI_CLASSES = ("pancreas", "pancreas_tumor", *SUBTYPE_SEG_CLASSES.values())
#: mm kept around the ROI when masking (0: the lesion and its host organ only)
ROI_MARGIN_MM = 0.0
#: HU window of CT channels, scaled to [0, 1]
CLASSIFICATION_WINDOW_HU: Tuple[float, float] = (-200.0, 300.0)
CT_SCHEME = "CTNormalization"


@dataclass
class Case:
    """A preprocessed case: volume (C, *spatial) in network axis order, the ROI centre (voxels),
    the fill (and padding) value of each channel, the ROI mask (None: no ROI voxel or no label map)
    and the window each channel was scaled with (None: the plans' normalisation)."""

    name: str
    volume: np.ndarray
    center: np.ndarray
    fill: np.ndarray
    roi: Optional[np.ndarray] = None
    windows: Tuple[Optional[Tuple[float, float]], ...] = ()


def window_ct(hu: np.ndarray, window: Sequence[float] = CLASSIFICATION_WINDOW_HU) -> np.ndarray:
    """HU clipped to `window` and scaled linearly to [0, 1]."""
    lo, hi = float(window[0]), float(window[1])
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def roi_label_ids(seg_file: Optional[str]) -> Optional[Set[int]]:
    """Label ids of pancreas and pancreatic lesion classes, from the dataset.json in the label
    folder of `seg_file` (a prediction folder) or next to it (a raw dataset); None: no such file or
    none of these classes (every foreground id counts)."""
    if seg_file is None:
        return None
    folder = Path(seg_file).parent
    dj = next((f for f in (folder / "dataset.json", folder.parent / "dataset.json") if f.is_file()), None)
    if dj is None:
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


def keep_region(mask: np.ndarray, margin_mm: float = ROI_MARGIN_MM,
                spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """`mask` grown by `margin_mm` (Euclidean distance on a grid of `spacing` mm, default 1 mm)."""
    if margin_mm <= 0:
        return mask
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(~mask, sampling=list(spacing) if spacing is not None else None)
    return dist <= margin_mm


def mask_outside(volume: np.ndarray, mask: np.ndarray, fill: Sequence[float], margin_mm: float = ROI_MARGIN_MM,
                 spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """`volume` (C, *spatial) with voxels farther than `margin_mm` from `mask` set to `fill` (one per channel)."""
    keep = keep_region(mask, margin_mm, spacing)[None]
    return np.where(keep, volume, np.asarray(fill, np.float32).reshape(-1, *([1] * mask.ndim))).astype(np.float32)


def fill_values(volume: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    """Per channel: the median over the ROI voxels `mask`, or the channel's minimum without a mask."""
    if mask is None:
        return volume.reshape(volume.shape[0], -1).min(1).astype(np.float32)
    return np.array([np.median(volume[c][mask]) for c in range(volume.shape[0])], np.float32)


def _windowing_preprocessor(base: type, window: Tuple[float, float]) -> type:
    """`base` (an nnU-Net preprocessor class) normalising CT channels with `window_ct` instead of the
    plans' scheme (other channels keep it); everything else (crop, resampling) is `base`'s."""

    class ClassificationPreprocessor(base):
        def _normalize(self, data, seg, configuration_manager, foreground_intensity_properties_per_channel):
            schemes = configuration_manager.normalization_schemes
            raw = {c: data[c].copy() for c in range(data.shape[0]) if schemes[c] == CT_SCHEME}
            if len(raw) < data.shape[0]:
                data = super()._normalize(data, seg, configuration_manager,
                                          foreground_intensity_properties_per_channel)
            for c, hu in raw.items():
                data[c] = window_ct(hu, window)
            return data

    return ClassificationPreprocessor


class CasePreprocessor:
    """Preprocess cases as in the module docstring, on `spec`'s geometry."""

    def __init__(self, spec: EncoderSpec, mask_roi: bool = True, margin_mm: float = ROI_MARGIN_MM,
                 window: Sequence[float] = CLASSIFICATION_WINDOW_HU) -> None:
        if margin_mm < 0:
            raise InputError(f"ROI margin must be at least 0 mm, got {margin_mm}")
        lo, hi = float(window[0]), float(window[1])
        if not hi > lo:
            raise InputError(f"intensity window [{lo}, {hi}] HU: the upper bound must exceed the lower")
        self.spec = spec
        self.mask_roi = mask_roi
        self.margin_mm = float(margin_mm)
        self.window = (lo, hi)
        if spec.plans is not None:
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager


            self.pm = as_suprem(PlansManager(spec.plans))
            self.cm = self.pm.get_configuration(spec.configuration)
            schemes = list(self.cm.normalization_schemes)
            self.windows = tuple(self.window if s == CT_SCHEME else None for s in schemes)
            self.spacing = [float(s) for s in self.cm.spacing]
            self.preprocessor = _windowing_preprocessor(self.cm.preprocessor_class, self.window)

    def describe(self) -> dict:
        """The input pipeline, as recorded in the classifier's run info."""
        return {"window_hu": list(self.window), "fill": "roi_median" if self.mask_roi else "minimum",
                "mask_roi": self.mask_roi, "roi_margin_mm": self.margin_mm}

    def _plans_case(self, image_files: List[str], seg_file: Optional[str]):
        from contextlib import redirect_stdout
        import io

        with redirect_stdout(io.StringIO()):  # nnU-Net prints per case
            data, seg, _ = self.preprocessor(verbose=False).run_case(list(image_files), seg_file, self.pm,
                                                                     self.cm, self.spec.dataset_json)
        seg_arr = seg[0] if seg_file is not None else None
        if seg_arr is not None:
            seg_arr = np.where(seg_arr < 0, 0, seg_arr)
        return np.asarray(data, np.float32), seg_arr, self.windows, self.spacing

    def _release_case(self, image_files: List[str], seg_file: Optional[str]):
        import SimpleITK as sitk


        preset = {**SUPREM_PREPROCESSING, "intensity": {"clip": list(self.window), "scale_to": [0.0, 1.0]}}
        arr, grid = preprocess_ct(sitk.ReadImage(str(image_files[0])), preset)
        seg_arr = None
        if seg_file is not None:
            lab = sitk.Resample(sitk.ReadImage(str(seg_file)), grid, sitk.Transform(), sitk.sitkNearestNeighbor)
            seg_arr = sitk.GetArrayFromImage(lab).transpose(2, 1, 0)  # (x, y, z) like the image array
        return arr[None], seg_arr, (self.window,), [float(s) for s in preset["spacing"]]

    def __call__(self, case: str, image_files: List[str], seg_file: Optional[str] = None) -> Case:
        run = self._plans_case if self.spec.plans is not None else self._release_case
        data, seg_arr, windows, spacing = run(image_files, seg_file)
        mask = roi_mask(seg_arr, roi_label_ids(seg_file))
        fill = fill_values(data, mask if self.mask_roi else None)
        if self.mask_roi and mask is not None:
            data = mask_outside(data, mask, fill, self.margin_mm, spacing)
        return Case(case, data, roi_center(mask, data.shape[1:], case, seg_arr is not None), fill, mask, windows)


def crop_patch(volume: np.ndarray, center: Sequence[float], patch: Sequence[int],
               shift: Optional[Sequence[int]] = None, fill: Optional[Sequence[float]] = None) -> np.ndarray:
    """The `patch`-sized block of `volume` (C, *spatial) centred on `center` (+ `shift` voxels),
    padded with `fill` (one value per channel; default the volume's minimum) where it leaves the volume."""
    patch = [int(p) for p in patch]
    start = [int(np.floor(c - p / 2 + 0.5)) + (int(s) if shift is not None else 0)
             for c, p, s in zip(center, patch, shift if shift is not None else [0] * len(patch))]
    out = np.empty((volume.shape[0], *patch), np.float32)
    out[:] = (np.asarray(fill, np.float32).reshape(-1, *([1] * len(patch))) if fill is not None
              else volume.min())
    src, dst = [], []
    for st, p, n in zip(start, patch, volume.shape[1:]):
        lo, hi = max(st, 0), min(st + p, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - st, hi - st))
    out[(slice(None), *dst)] = volume[(slice(None), *src)]
    return out


def case_patch(case: Case, patch: Sequence[int], shift: Optional[Sequence[int]] = None) -> np.ndarray:
    """The patch of `case` around its ROI centre, padded with its fill values."""
    return crop_patch(case.volume, case.center, patch, shift, case.fill)


def preprocess_cases(pre: Callable, images: dict, segs: Optional[dict] = None) -> List[Case]:
    """Every case of {case: image files} (with {case: label file or None}), in the given order."""
    return [pre(c, files, (segs or {}).get(c)) for c, files in images.items()]


def patch_for(spec: EncoderSpec, patch: Optional[Sequence[int]]) -> Tuple[int, ...]:
    """The patch size: `patch` when given (checked against the backbone's divisibility), else the plans'."""
    if patch is None:
        return spec.default_patch
    div = get_backbone(spec.backbone).divisible_by
    if div is None and spec.plans is not None:  # nnU-Net topology: the product of the strides
        strides = spec.plans["configurations"][spec.configuration]["architecture"]["arch_kwargs"].get("strides", [])
        div = int(np.prod([max(s) if isinstance(s, (list, tuple)) else int(s) for s in strides]))
    bad = [int(p) for p in patch if div and int(p) % div]
    if bad or min(int(p) for p in patch) < 1:
        raise InputError(f"--patch {list(patch)}: every side must be a positive multiple of {div} for the "
                         f"{spec.backbone} encoder")
    return tuple(int(p) for p in patch)
