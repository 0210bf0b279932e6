"""Left/right from the patient's side: connected components and the image's direction matrix.

World coordinates are ITK/DICOM LPS (+x = patient left). A voxel's world x follows from its
indices, the spacing, the origin and the direction matrix, never from the array index alone, so
an image stored right-to-left or transposed still splits correctly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

#: A component with at least this fraction of its voxels on each side straddles the midline
#: (e.g. a horseshoe kidney) and is split voxel-wise at the midline instead.
STRADDLE_FRACTION = 0.25


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a (z, y, x) array: spacing/origin in (x, y, z), direction columns = axes."""

    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: np.ndarray  # 3x3

    @classmethod
    def of(cls, img) -> "Geometry":
        """Geometry of a SimpleITK image."""
        return cls(tuple(img.GetSpacing()), tuple(img.GetOrigin()), np.array(img.GetDirection()).reshape(3, 3))

    def world_x(self, kji: np.ndarray) -> np.ndarray:
        """LPS x (mm) of voxel positions given as (..., 3) arrays of (k, j, i) = (z, y, x) indices."""
        ijk = np.asarray(kji, float)[..., ::-1]
        return self.origin[0] + ijk @ (self.direction[0] * np.asarray(self.spacing))


def _mean_index(mask: np.ndarray) -> Optional[np.ndarray]:
    """Mean (k, j, i) index of a boolean mask, via projections (no index arrays)."""
    n = int(mask.sum())
    if n == 0:
        return None
    out = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        counts = mask.sum(axis=others, dtype=np.int64)
        out.append(float((counts * np.arange(mask.shape[axis])).sum()) / n)
    return np.array(out)


def midline_x(geo: Geometry, image: Optional[np.ndarray] = None, label: Optional[np.ndarray] = None,
              sided: Sequence[Tuple[np.ndarray, np.ndarray]] = ()) -> float:
    """The patient's mid-sagittal plane as an LPS x (mm).

    In order of preference: the centre of the body in the CT (voxels above -500 HU); the midpoint
    of already sided structure pairs (`sided`: (left mask, right mask)); the centre of all labelled
    voxels; the centre of the field of view.
    """
    if image is not None:
        c = _mean_index(image > -500)
        if c is not None:
            return float(geo.world_x(c))
    mids = []
    for left, right in sided:
        cl, cr = _mean_index(left), _mean_index(right)
        if cl is not None and cr is not None:
            mids.append((geo.world_x(cl) + geo.world_x(cr)) / 2)
    if mids:
        return float(np.mean(mids))
    if label is not None:
        c = _mean_index(label > 0)
        if c is not None:
            return float(geo.world_x(c))
    shape = image.shape if image is not None else label.shape
    return float(geo.world_x((np.array(shape) - 1) / 2.0))


def split_left_right(mask: np.ndarray, geo: Geometry, midline: float) -> Tuple[np.ndarray, np.ndarray]:
    """(left, right) boolean masks: each connected component of `mask` goes to the patient side
    most of its voxels lie on; components straddling the midline are cut at it."""
    left = np.zeros(mask.shape, bool)
    right = np.zeros(mask.shape, bool)
    bbox = ndimage.find_objects(mask.astype(np.uint8))
    if not bbox or bbox[0] is None:
        return left, right
    sl = bbox[0]
    sub = mask[sl]
    k, j, i = np.meshgrid(*(np.arange(s.start, s.stop) for s in sl), indexing="ij", sparse=True)
    d = geo.direction[0] * np.asarray(geo.spacing)
    xw = geo.origin[0] + d[0] * i + d[1] * j + d[2] * k  # world x of every voxel in the box
    on_left = xw > midline
    comps, n = ndimage.label(sub, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return left, right
    ids = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(comps), comps, ids)
    frac_left = ndimage.sum_labels(on_left, comps, ids) / sizes
    to_left = np.zeros(n + 1, bool)
    to_left[1:] = frac_left > 0.5
    straddle = np.zeros(n + 1, bool)
    straddle[1:] = np.minimum(frac_left, 1 - frac_left) >= STRADDLE_FRACTION
    sub_left = np.where(straddle[comps], on_left, to_left[comps]) & sub
    left[sl] = sub_left
    right[sl] = sub & ~sub_left
    return left, right
