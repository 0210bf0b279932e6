"""A fast `--roi-subset`: locate the ROI with a coarse pass, crop the input to it, run the model on the crop.

Direct inference with `--roi-subset liver,spleen` needs the model only where those organs are.
TotalSegmentator's `roi_subset` runs a separate 6 mm "organ localisation" model, crops the CT to the
ROI's bounding box plus a margin and runs the fine model on the crop. `FastRoiPredictor.predict_case`
does the same with the model itself:

1. **Coarse pass.** The input image (read once) is sampled (nearest) at `coarse_factor` times the plan's
   spacing and normalised as the plan normalises; the same network runs its sliding window there (same
   patch in voxels, so a window sees `coarse_factor`^3 times the volume; no mirroring). The box of the
   voxels whose argmax is an ROI class (per class, the connected components of at least
   `MIN_COMPONENT_FRACTION` of its largest, so that stray voxels at other organs' borders do not stretch
   it) is mapped to the input's voxel grid. The coarse image is sampled, not averaged: averaging mixes
   an organ's edge with fat into the intensities of other organs, which a model trained at the plan's
   spacing reads as those organs.
2. **Crop.** The box is grown by `margin_mm` (default 20 mm: the coarse voxels are several mm wide;
   TotalSegmentator grows its ROI crop by 20 voxels) plus `context_patches` times a patch at the plan's
   spacing (default 0; 0.5 gives every voxel of the box half a patch of image around it, as the windows
   at the box's face see in a full run), in the input's own voxel grid, and the input is cut to it.
3. **Fine pass.** nnU-Net's preprocessing and the normal sliding window run on the crop (its own window
   grid: about box / step + 1 windows per axis instead of the whole image's), its labels are exported
   on the crop's grid and pasted into an all-background label map of the input's size, which is
   written with the input's geometry.

Inside the grown box the label map matches the full run's up to the window grid and the context a
window sees beyond the crop (every ROI voxel has at least `margin_mm` of image around it); outside the
crop it is background, so stray ROI voxels a full run leaves far from the organs are not there. Two
checks fall back to the full run on the whole image (logged, `roi_fallback` says why):

* no ROI class in the coarse pass;
* the fine pass's ROI components (same size rule) come within `EDGE_VOXELS` of a face of the crop that
  is not the image's border (the coarse pass cut an organ short).

Windows are counted (`coarse_windows`, `windows_run`, `windows_skipped`) and logged per case next to
the number the full run needs (`full_windows`).
"""
from __future__ import annotations

import copy
import logging
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
from scipy import ndimage

from ..errors import InputError
from .fast_predictor import CasePrediction, SupremPredictor

log = logging.getLogger(__name__)

#: coarse spacing = this times the plan's spacing (TotalSegmentator localises at 6 mm for a 1.5 mm model)
COARSE_FACTOR = 3.0
#: the coarse box is grown by this many mm on every side (coarse voxels are several mm wide)
MARGIN_MM = 20.0
#: ... and by this fraction of a patch (at the plan's spacing) for the network's context
CONTEXT_PATCHES = 0.0
#: a class's connected components smaller than this fraction of its largest are stray voxels, not organ
MIN_COMPONENT_FRACTION = 0.1
#: fine-pass ROI voxels this close to an inner face of the crop mean the coarse pass cut an organ short
EDGE_VOXELS = 2
#: the crop's ends may move this many network voxels outwards to lie on the whole image's network grid
ALIGN_SEARCH = 16
#: ... to the first network voxel that lies this close (in input voxels) to an input voxel
ALIGN_TOLERANCE = 0.1

Box = Tuple[slice, ...]


class FastRoiPredictor(SupremPredictor):
    """`SupremPredictor` whose `predict_case`, with `roi_labels` set, runs a coarse pass, crops the input
    to the ROI and runs the model on the crop (module doc). Without `roi_labels`, with nnU-Net's own
    window (`fast_window=False`) or when probabilities are asked for, it is `SupremPredictor`."""

    def __init__(self, *args, coarse_factor: float = COARSE_FACTOR, margin_mm: float = MARGIN_MM,
                 context_patches: float = CONTEXT_PATCHES, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not coarse_factor > 1:
            raise ValueError(f"coarse_factor must be above 1, got {coarse_factor}")
        if margin_mm < 0:
            raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
        if context_patches < 0:
            raise ValueError(f"context_patches must be >= 0, got {context_patches}")
        self.coarse_factor, self.margin_mm = float(coarse_factor), float(margin_mm)
        self.context_patches = float(context_patches)
        #: per case: windows of the coarse pass, windows a full run would take, why the full run was taken
        self.coarse_windows = self.full_windows = 0
        self.roi_fallback: Optional[str] = None
        #: per case: the crop (slices of the input array, the reader's axis order) the fine pass ran on
        self.roi_box_used: Optional[Box] = None

    # ---------------------------------------------------------------- per case
    def predict_case(self, image_files: Sequence[str], probabilities: bool = False) -> CasePrediction:
        if not self.roi_labels or not self.fast_window or probabilities or len(self.configuration_manager.spacing) != 3:
            return super().predict_case(image_files, probabilities)
        self.coarse_windows, self.roi_fallback, self.roi_box_used = 0, None, None
        data, props = self.plans_manager.image_reader_writer_class().read_images(list(image_files))
        if data.ndim != 4 or len(props["spacing"]) != 3:
            return self._full_run(data, props, image_files, "the image is not 3D")
        if not np.isfinite(data).all():
            raise InputError(f"{image_files[0]}: the image holds NaN or infinite values")
        self.full_windows = self._window_count(data.shape[1:], props["spacing"])
        box = self.coarse_roi_box(data, props, image_files)
        if box is None:
            return self._full_run(data, props, image_files, "the coarse pass found none of the ROI classes")
        crop_props = crop_properties(props, box)
        pre, logits = self._preprocess_and_run(np.ascontiguousarray(data[(slice(None), *box)]), crop_props,
                                               image_files)
        reason = self._cut_short(logits, pre, box, data.shape[1:])
        if reason:
            return self._full_run(data, props, image_files, reason)
        seg = self.logits_to_segmentation(logits, pre)
        full = np.zeros(data.shape[1:], seg.dtype)
        full[box] = seg
        self.roi_box_used = box
        log.info("fast ROI: %d coarse + %d fine windows instead of %d (crop %s of %s)", self.coarse_windows,
                 self.windows_run, self.full_windows, [b.stop - b.start for b in box], list(data.shape[1:]))
        return CasePrediction(full, props)

    def coarse_roi_box(self, data: np.ndarray, props: dict, image_files: Sequence[str] = ("image",)) -> Optional[Box]:
        """The crop of `data` (c, reader axes) around the ROI found by a pass at `coarse_factor` times the
        plan's spacing, grown by `margin_mm` and `context_patches` of a patch; None when the coarse pass finds no ROI class."""
        shape = data.shape[1:]
        net = self._network_spacing_reader(len(shape))
        coarse = [max(1, int(round(n * s / (p * self.coarse_factor)))) for n, s, p in zip(shape, props["spacing"], net)]
        idx = [np.clip(np.floor((np.arange(c) + 0.5) * n / c).astype(int), 0, n - 1) for n, c in zip(shape, coarse)]
        small = data[np.ix_(range(data.shape[0]), *idx)]
        # the sample is handed to nnU-Net's preprocessing as if it were at the plan's spacing: it is only
        # normalised (and cropped to its non-zero region), not resampled
        small_props = {**copy.deepcopy(props), "spacing": list(net)}
        mirror, self.use_mirroring = self.use_mirroring, False  # localising needs no test-time mirroring
        try:
            pre, logits = self._preprocess_and_run(small, small_props, image_files)
        finally:
            self.use_mirroring = mirror
        self.coarse_windows = self.windows_run
        found = roi_extent(logits.argmax(0).numpy(), self.roi_labels)
        if found is None:
            return None
        back = self.plans_manager.transpose_backward
        bbox = pre["bbox_used_for_cropping"]  # transposed-forward order, on the sample
        out = []
        for a, (n, c, s, p) in enumerate(zip(shape, coarse, props["spacing"], net)):
            lo, hi = (v + bbox[back[a]][0] for v in found[back[a]])
            patch = float(self.configuration_manager.patch_size[back[a]])
            grow = int(math.ceil((self.margin_mm + self.context_patches * patch * p) / s))
            out.append(aligned_crop(max(0, int(math.floor(lo * n / c)) - grow),
                                    min(n, int(math.ceil(hi * n / c)) + grow), n, s, p))
        return tuple(out)

    # ---------------------------------------------------------------- helpers
    def _preprocess_and_run(self, data: np.ndarray, props: dict,
                            image_files: Sequence[str]) -> Tuple[dict, torch.Tensor]:
        """nnU-Net's preprocessing of `data` (c, reader axes) and the sliding window's logits on it (CPU)."""
        pre = self.configuration_manager.preprocessor_class(verbose=False)
        x, _, props = pre.run_case_npy(data, None, props, self.plans_manager, self.configuration_manager,
                                       self.dataset_json)
        if not np.isfinite(x).all():
            raise InputError(f"{image_files[0]}: the image holds NaN or infinite values")
        return props, self.predict_logits_from_preprocessed_data(torch.from_numpy(x)).cpu()

    def _full_run(self, data: np.ndarray, props: dict, image_files: Sequence[str], reason: str) -> CasePrediction:
        log.info("fast ROI: %s; running on the whole image (%d windows)", reason, self.full_windows)
        self.roi_fallback = reason
        pre, logits = self._preprocess_and_run(data, copy.deepcopy(props), image_files)
        return CasePrediction(self.logits_to_segmentation(logits, pre), pre)

    def _cut_short(self, logits: torch.Tensor, pre: dict, box: Box, shape: Sequence[int]) -> Optional[str]:
        """Why the crop may have cut an ROI organ short (its fine-pass voxels reach a face of the crop that
        is not the image's border), or None."""
        found = roi_extent(logits.argmax(0).numpy(), self.roi_labels)
        if found is None:
            return None
        grid = logits.shape[1:]  # network grid of the crop, transposed-forward order
        bbox = pre["bbox_used_for_cropping"]
        forward = self.plans_manager.transpose_forward
        for j, ((lo, hi), n_grid) in enumerate(zip(found, grid)):
            a = forward[j]  # the reader axis of network axis j
            n_cut = pre["shape_before_cropping"][j]
            inner_lo = box[a].start > 0 and bbox[j][0] == 0
            inner_hi = box[a].stop < shape[a] and bbox[j][1] == n_cut
            if (inner_lo and lo < EDGE_VOXELS) or (inner_hi and hi > n_grid - EDGE_VOXELS):
                return f"the ROI reaches the edge of the crop along axis {a}"
        return None

    def _network_spacing_reader(self, ndim: int) -> List[float]:
        """The plan's spacing per reader axis (the plan lists it in transposed-forward order)."""
        spacing = [float(s) for s in self.configuration_manager.spacing]
        return [spacing[b] for b in self.plans_manager.transpose_backward[:ndim]]

    def _window_count(self, shape: Sequence[int], spacing: Sequence[float]) -> int:
        """Windows the sliding window takes on the whole image (network grid, padded to the patch)."""
        forward = self.plans_manager.transpose_forward
        grid = compute_new_shape([shape[a] for a in forward], [spacing[a] for a in forward],
                                 [float(s) for s in self.configuration_manager.spacing])
        padded = [max(int(n), int(p)) for n, p in zip(grid, self.configuration_manager.patch_size)]
        return len(self._internal_get_sliding_window_slicers(tuple(padded)))


def aligned_crop(start: int, stop: int, n: int, spacing: float, network_spacing: float,
                 search: int = ALIGN_SEARCH) -> slice:
    """The slice of input voxels (at least `start:stop` of `n`) whose ends lie on the input coordinates
    of network-grid voxels of the whole image, so that the crop's own network grid lies on the whole
    image's: nnU-Net's resize puts network voxel j at input coordinate (j + 0.5) * r - 0.5, r = n / m,
    m = round(n * spacing / network_spacing); a crop from input voxel j0 * r to j1 * r (both whole)
    resampled to j1 - j0 voxels puts its voxel i at the whole image's j0 + i. Within `search` network
    voxels outside `start:stop`, the j0 and j1 nearest to it whose j * r is within ALIGN_TOLERANCE of a
    whole number are taken (else the closest)."""
    m = max(1, int(round(n * spacing / network_spacing)))
    r = n / m

    def best(candidates: Sequence[int]) -> int:  # the nearest within ALIGN_TOLERANCE, else the closest
        error = [abs(j * r - round(j * r)) for j in candidates]
        good = [j for j, e in zip(candidates, error) if e <= ALIGN_TOLERANCE]
        return good[0] if good else candidates[int(np.argmin(error))]

    j0 = best(list(range(int(math.floor(start / r)), max(-1, int(math.floor(start / r)) - search - 1), -1)))
    j1 = best(list(range(min(m, int(math.ceil(stop / r))), min(m, int(math.ceil(stop / r)) + search) + 1)))
    lo = min(start, int(round(j0 * r)))
    hi = n if j1 == m else max(stop, min(n, int(round(j1 * r))))
    return slice(max(0, lo), hi)


def crop_properties(props: dict, box: Box) -> dict:
    """The reader's properties of the crop `box` (slices in the reader's axis order) of an image: a deep
    copy whose SimpleITK origin is moved to the crop's first voxel (spacing and direction stay)."""
    out = copy.deepcopy(props)
    sitk_stuff = out.get("sitk_stuff")
    if sitk_stuff is not None:
        start_xyz = np.array([b.start for b in box][::-1], float)
        direction = np.asarray(sitk_stuff["direction"], float).reshape(3, 3)
        spacing = np.asarray(sitk_stuff["spacing"], float)
        sitk_stuff["origin"] = tuple((np.asarray(sitk_stuff["origin"], float)
                                      + direction @ (spacing * start_xyz)).tolist())
    return out


def roi_extent(labels: np.ndarray, roi_labels: Sequence[int],
               min_fraction: float = MIN_COMPONENT_FRACTION) -> Optional[List[Tuple[int, int]]]:
    """[(first, last + 1) per axis] of the voxels labelled with an ROI class, counting per class only the
    26-connected components of at least `min_fraction` times its largest one's voxels; None when there
    are none."""
    lo, hi = None, None
    for k in roi_labels:
        mask = labels == int(k)
        if not mask.any():
            continue
        comp, n = ndimage.label(mask, np.ones((3,) * labels.ndim, bool))
        if n > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            mask = (sizes >= min_fraction * sizes.max())[comp] & mask
        where = np.nonzero(mask)
        a = np.array([w.min() for w in where])
        b = np.array([w.max() + 1 for w in where])
        lo, hi = (a, b) if lo is None else (np.minimum(lo, a), np.maximum(hi, b))
    return None if lo is None else [(int(a), int(b)) for a, b in zip(lo, hi)]
