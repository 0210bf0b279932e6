"""A fast `--roi-subset`: locate the ROI with a coarse pass, then run only the windows that reach it.

Direct inference with `--roi-subset liver,spleen` needs the sliding window only where those organs
are. TotalSegmentator's `roi_subset` runs a separate 6 mm "organ localisation" model, crops the CT to
the ROI's bounding box plus a margin and runs the fine model on the crop. `FastRoiPredictor` does the
same with the model itself, in two passes over the preprocessed image (network grid, after nnU-Net's
cropping, resampling and normalisation):

1. **Coarse pass.** The image is sampled at `coarse_factor` times the plan's spacing, the same network runs its sliding window there (same patch in voxels, so a
   window sees `coarse_factor`^3 times the volume; no mirroring), and the box of the voxels whose
   argmax is an ROI class (per class, the connected components of at least `MIN_COMPONENT_FRACTION`
   of its largest, so that stray voxels at other organs' borders do not stretch it) is mapped back to
   the full grid and grown by `margin_mm`. The coarse image is sampled (nearest), not averaged:
   averaging mixes an organ's edge with fat into the intensities of other organs, which a model
   trained at the plan's spacing reads as those organs.
2. **Fine pass.** nnU-Net's full-resolution sliding window runs with the full run's window grid
   (same image, same step, same Gaussian), but only the windows that overlap the box. Every window
   that covers a voxel of the box overlaps it, so inside the box the logits are the full run's (the
   same windows summed in the same order); outside it the logits are set to background. The network
   context of a window is never cut: windows read the whole image, not a crop.

Inside the box the label map is therefore the full run's voxel for voxel; the ROI classes equal the
full run's wherever the full run's ROI voxels (and the one-voxel neighbourhood the label export
interpolates from) lie inside the box. Stray components (below `MIN_COMPONENT_FRACTION` of the class's
largest) outside the box are left out: there the fast ROI is background where the full run may have a
few voxels. Two checks keep the rest so:

* no ROI class in the coarse pass: the full window runs (logged);
* the fine pass's ROI components (same size rule) come within `EDGE_VOXELS` of a box face that is not
  the image border (the coarse pass cut an organ short): the full window runs (logged), so the result is the full run's.

Windows are counted (`coarse_windows`, `windows_run`, `windows_skipped`) and logged per case next to
the number the full run needs (`full_windows`).
"""
from __future__ import annotations

import logging
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from .fast_predictor import BACKGROUND_LOGIT, SupremPredictor

log = logging.getLogger(__name__)

#: coarse spacing = this times the plan's spacing (TotalSegmentator localises at 6 mm for a 1.5 mm model)
COARSE_FACTOR = 3.0
#: the coarse box is grown by this many mm on every side (coarse voxels are several mm wide)
MARGIN_MM = 15.0
#: a class's connected components smaller than this fraction of its largest are stray voxels, not organ
MIN_COMPONENT_FRACTION = 0.1
#: fine-pass ROI voxels this close to an inner face of the box mean the coarse pass cut an organ short
EDGE_VOXELS = 2

Box = Tuple[slice, ...]


class FastRoiPredictor(SupremPredictor):
    """`SupremPredictor` whose sliding window, with `roi_labels` set, runs a coarse pass and then only the
    full-resolution windows that reach the ROI (module doc). Without `roi_labels`, or with nnU-Net's own
    window (`fast_window=False`), it is `SupremPredictor`."""

    def __init__(self, *args, coarse_factor: float = COARSE_FACTOR, margin_mm: float = MARGIN_MM, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not coarse_factor > 1:
            raise ValueError(f"coarse_factor must be above 1, got {coarse_factor}")
        if margin_mm < 0:
            raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
        self.coarse_factor, self.margin_mm = float(coarse_factor), float(margin_mm)
        self._window_box: Optional[Box] = None  # the ROI box in the coordinates of the (padded) window grid
        #: per case: windows of the coarse pass, windows a full run would take, whether the full run was taken
        self.coarse_windows = self.full_windows = 0
        self.roi_fallback: Optional[str] = None
        self.roi_box_used: Optional[Box] = None

    # ---------------------------------------------------------------- the two passes
    @torch.inference_mode()
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        if not self.roi_labels or not self.fast_window:
            return super().predict_sliding_window_return_logits(input_image)
        self.coarse_windows, self.roi_fallback, self.roi_box_used = 0, None, None
        shape = tuple(input_image.shape[1:])
        self.full_windows = len(self._internal_get_sliding_window_slicers(self._padded_shape(shape)))
        box = self.coarse_roi_box(input_image)
        if box is None:
            return self._full_run(input_image, "the coarse pass found none of the ROI classes")
        self._window_box = self._shift_to_padded(box, shape)
        try:
            logits = super().predict_sliding_window_return_logits(input_image)
        finally:
            self._window_box = None
        reason = self._cut_short(logits, box, shape)
        if reason:
            return self._full_run(input_image, reason)
        set_background_outside(logits, box)
        self.roi_box_used = box
        log.info("fast ROI: %d coarse + %d fine windows instead of %d (box %s of %s)", self.coarse_windows,
                 self.windows_run, self.full_windows, [b.stop - b.start for b in box], list(shape))
        return logits

    def coarse_roi_box(self, image: torch.Tensor) -> Optional[Box]:
        """The ROI's box on the full grid of `image` (c, x, y, z) from a pass at `coarse_factor` times the
        spacing, grown by `margin_mm`; None when the coarse pass finds no ROI class."""
        shape = tuple(image.shape[1:])
        coarse = [max(1, int(round(n / self.coarse_factor))) for n in shape]
        small = F.interpolate(image[None].float(), size=coarse, mode="nearest-exact")[0]
        mirror, self.use_mirroring = self.use_mirroring, False  # localising needs no test-time mirroring
        try:
            labels = super().predict_sliding_window_return_logits(small).argmax(0).cpu().numpy()
        finally:
            self.use_mirroring = mirror
        self.coarse_windows = self.windows_run
        found = roi_extent(labels, self.roi_labels)
        if found is None:
            return None
        spacing = [float(s) for s in self.configuration_manager.spacing][-len(shape):]
        out = []
        for (lo, hi), n, c, s in zip(found, shape, coarse, spacing):
            scale, grow = n / c, int(math.ceil(self.margin_mm / s))
            out.append(slice(max(0, int(math.floor(lo * scale)) - grow), min(n, int(math.ceil(hi * scale)) + grow)))
        return tuple(out)

    def _full_run(self, image: torch.Tensor, reason: str) -> torch.Tensor:
        log.info("fast ROI: %s; running the full window (%d windows)", reason, self.full_windows)
        self.roi_fallback = reason
        return super().predict_sliding_window_return_logits(image)

    def _cut_short(self, logits: torch.Tensor, box: Box, shape: Sequence[int]) -> Optional[str]:
        """Why the box may have cut an ROI organ short (its fine-pass voxels reach an inner face), or None."""
        found = roi_extent(logits[(slice(None), *box)].argmax(0).cpu().numpy(), self.roi_labels)
        if found is None:
            return None
        for axis, ((lo, hi), b, n) in enumerate(zip(found, box, shape)):
            if (b.start > 0 and lo < EDGE_VOXELS) or (b.stop < n and hi > b.stop - b.start - EDGE_VOXELS):
                return f"the ROI reaches the edge of the coarse box along axis {axis}"
        return None

    # ---------------------------------------------------------------- window selection
    def window_has_body(self, sl: Tuple[slice, ...]) -> bool:
        """A window runs when it holds body (`SupremPredictor`) and, in the fine pass, overlaps the ROI box."""
        if self._window_box is not None and not all(w.start < b.stop and b.start < w.stop
                                                    for w, b in zip(sl[1:], self._window_box)):
            return False
        return super().window_has_body(sl)

    def _padded_shape(self, shape: Sequence[int]) -> Tuple[int, ...]:
        return tuple(max(int(n), int(p)) for n, p in zip(shape, self.configuration_manager.patch_size))

    def _shift_to_padded(self, box: Box, shape: Sequence[int]) -> Box:
        """`box` on the grid the windows see: an image smaller than the patch is padded centred (pad_nd_image)."""
        below = [(p - n) // 2 for n, p in zip(shape, self._padded_shape(shape))]
        return tuple(slice(b.start + o, b.stop + o) for b, o in zip(box, below))


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


def set_background_outside(logits: torch.Tensor, box: Box) -> None:
    """Background logits (BACKGROUND_LOGIT for channel 0, 0 for the others) everywhere outside `box`, in place."""
    def fill(region) -> None:
        logits[(slice(None), *region)] = 0.0
        logits[(0, *region)] = BACKGROUND_LOGIT

    for axis, b in enumerate(box):
        inner = tuple(box[:axis])  # axes before this one: already restricted to the box
        rest = (slice(None),) * (len(box) - axis - 1)
        fill((*inner, slice(0, b.start), *rest))
        fill((*inner, slice(b.stop, None), *rest))
