"""Image thumbnails that recognise the same scan stored differently (near-duplicate fingerprint).

A thumbnail is the CT reoriented to LPS, clipped to [-1000, 1000] HU and box-averaged onto a fixed
`SIZE`³ grid spanning the whole volume (exact fractional box weights, so flipping the voxels
flips the thumbnail exactly). Because the grid spans the voxel extent, not millimetres, the
thumbnail does not change with the voxel type (int16 vs float32), with a corrected header spacing
(5 -> 2.5 mm slices) or with the axis flips a header declares; a resampled copy (other voxel
counts over the same field of view) changes it only slightly. A voxel-data flip whose header was
"corrected" (the scan looks mirrored) is caught by comparing under the 8 axis flips.

Comparison: `coarse` (8³ of the thumbnail) is a cheap pre-filter; the decision uses the
thumbnail's detail (the thumbnail minus its Gaussian blur, z-normalised), which ignores the body
outline that every abdominal CT shares, so different patients with the same field of view do not
match. Scores are Pearson correlations (mean product of z-normalised values).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from suprem_nnunet.errors import InputError

SIZE = 24  # thumbnail edge (voxels)
COARSE = 8  # pre-filter edge (box-averaged from the thumbnail; SIZE must be a multiple)
DETAIL_SIGMA = 1.5  # thumbnail voxels: the blur removed to get the detail
HU_RANGE = (-1000.0, 1000.0)
Flip = Tuple[bool, bool, bool]
#: The 8 axis flips (z, y, x), identity first.
FLIPS: List[Flip] = [tuple(bool(b) for b in f) for f in itertools.product((0, 1), repeat=3)]


def box_weights(n: int, size: int) -> np.ndarray:
    """(size, n) weights averaging n voxels onto `size` equal bins (fractional overlaps, rows sum
    to 1; when n < size each bin takes the voxel(s) it overlaps)."""
    edges = np.arange(size + 1) * (n / size)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n)[None, :]
    w = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return w / w.sum(axis=1, keepdims=True)


def normalise(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, np.float64)
    sd = t.std()
    return ((t - t.mean()) / sd if sd > 1e-9 else np.zeros_like(t)).astype(np.float32)


def thumbnail_of_array(arr: np.ndarray, size: int = SIZE, chunk: int = 16) -> np.ndarray:
    """Z-normalised `size`³ thumbnail (float32) of a (z, y, x) CT array in LPS voxel order.

    Works slab by slab (`chunk` slices), so no full-size float copy of the volume is made."""
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise InputError(f"expected a 3D array, got shape {arr.shape}")
    wz, wy, wx = (box_weights(n, size) for n in arr.shape)
    lo, hi = HU_RANGE
    planes = np.empty((arr.shape[0], size, size))
    for a in range(0, arr.shape[0], chunk):
        slab = np.clip(np.asarray(arr[a:a + chunk], np.float32), lo, hi)
        planes[a:a + chunk] = np.einsum("yj,zjx,ix->zyi", wy, slab, wx, optimize=True)
    return normalise(np.tensordot(wz, planes, axes=(1, 0)))


def thumbnail(img: sitk.Image, size: int = SIZE) -> np.ndarray:
    """Thumbnail of an image after reorientation to LPS (see module docstring)."""
    return thumbnail_of_array(sitk.GetArrayViewFromImage(sitk.DICOMOrient(img, "LPS")), size)


def coarse(t: np.ndarray, size: int = COARSE) -> np.ndarray:
    """Smaller z-normalised thumbnail for the pre-filter."""
    f = t.shape[0] // size
    return normalise(t.reshape(size, f, size, f, size, f).mean(axis=(1, 3, 5)))


def detail(t: np.ndarray, sigma: float = DETAIL_SIGMA) -> np.ndarray:
    """The thumbnail minus its Gaussian blur, z-normalised (flip-equivariant: mirror boundary)."""
    return normalise(t - ndimage.gaussian_filter(t.astype(np.float64), sigma, mode="mirror"))


def flipped(t: np.ndarray) -> np.ndarray:
    """(8, t.size) the array under every axis flip, in `FLIPS` order."""
    return np.stack([t[tuple(slice(None, None, -1) if f else slice(None) for f in fl)].ravel() for fl in FLIPS])


@dataclass
class Fingerprint:
    """What near-duplicate search keeps per case: voxel counts, extent and two descriptors."""

    shape: Tuple[int, int, int]  # (z, y, x) voxels in LPS order
    extent_mm: Tuple[float, float, float]  # (z, y, x) field of view
    coarse: np.ndarray  # (COARSE³,) flattened
    detail: np.ndarray  # (SIZE, SIZE, SIZE)

    @classmethod
    def of(cls, img: sitk.Image) -> "Fingerprint":
        lps = sitk.DICOMOrient(img, "LPS")
        t = thumbnail_of_array(sitk.GetArrayViewFromImage(lps))
        shape = tuple(int(n) for n in lps.GetSize()[::-1])
        extent = tuple(float(n * s) for n, s in zip(lps.GetSize()[::-1], lps.GetSpacing()[::-1]))
        return cls(shape, extent, coarse(t).ravel(), detail(t))

    def to_npz(self) -> dict:
        return {"shape": np.array(self.shape), "extent_mm": np.array(self.extent_mm),
                "coarse": self.coarse, "detail": self.detail}

    @classmethod
    def from_npz(cls, d) -> "Fingerprint":
        return cls(tuple(int(v) for v in d["shape"]), tuple(float(v) for v in d["extent_mm"]),
                   np.asarray(d["coarse"], np.float32), np.asarray(d["detail"], np.float32))


def detail_score(a: Fingerprint, b: Fingerprint, flip: Flip) -> float:
    """Detail correlation of `a` flipped by `flip` with `b`."""
    fa = a.detail[tuple(slice(None, None, -1) if f else slice(None) for f in flip)]
    return float(np.dot(fa.ravel(), b.detail.ravel()) / a.detail.size)


def match(a: Fingerprint, b: Fingerprint) -> Tuple[float, Flip]:
    """Best detail correlation of `a` flipped onto `b` over the 8 flips, and that flip (flipping
    `a`'s LPS voxel axes by it lines `a` up with `b`)."""
    c = flipped(a.detail) @ b.detail.ravel() / a.detail.size
    i = int(np.argmax(c))
    return float(c[i]), FLIPS[i]
