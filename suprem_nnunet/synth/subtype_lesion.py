"""Pancreatic lesions of three sub-types, drawn into a phantom in place of its generic tumour.

Appearance follows radiology (portal-venous base, the phantom's pancreas at 80-100 HU):

  * ``pdac`` (ductal adenocarcinoma): hypo-attenuating (about 45 HU below the pancreas),
    heterogeneous, ill-defined and infiltrative (lobulated shape, margin blurred over ~4 mm into
    the surrounding tissue); may dilate the pancreatic duct towards the tail (a ~3 mm water-density
    tube inside the pancreas, still labelled pancreas).
  * ``cyst``: near-water (~8 HU), homogeneous, round with a sharp margin and a thin enhancing wall.
  * ``pannet`` (neuro-endocrine tumour): well-defined, round, hyper-enhancing (about 60 HU above
    the pancreas, as in the arterial phase), may calcify (a few voxels at 350-600 HU).

`difficulty` d in [0, 1] interpolates every sub-type's parameters (contrast to the pancreas,
texture sd, margin blur, shape irregularity, size) towards their common mean, scales the chance
of the tell-tale extras (duct, wall, calcification) by 1 - d and widens the per-case spread of
the lesion's attenuation (sd 8 + 25 d HU): at d = 0 the sub-types separate by intensity alone,
at d = 1 they differ only by chance. The lesion is drawn from its own random stream
(`[seed, 3]`), so a case's anatomy is the same whatever the sub-type.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy import ndimage
from ..errors import InputError

#: Pancreatic lesion sub-types the phantom can draw instead of its generic `pancreas_tumor`
#: (`PhantomGenerator(seed)(..., pancreas_lesion=...)`); "none" draws a lesion-free pancreas.
PANCREAS_LESION_SUBTYPES: Tuple[str, ...] = ("pdac", "cyst", "pannet")
#: The novel segmentation class each sub-type's lesion is labelled as (the segmentation route).
SUBTYPE_SEG_CLASSES: Dict[str, str] = {"pdac": "pdac", "cyst": "pancreatic_cyst", "pannet": "pannet"}


@dataclass(frozen=True)
class _Look:
    contrast: float  # HU relative to the pancreas (cyst: set from its absolute ~8 HU)
    texture_sd: float  # HU, fine-grained heterogeneity
    margin_mm: float  # blur of the edge into the surroundings (0: sharp)
    irregularity: float  # relative bumpiness of the outline and anisotropy of the radii
    radius_mm: Tuple[float, float]
    extra_probability: float  # duct dilation (pdac), enhancing wall (cyst), calcification (pannet)


_LOOKS: Dict[str, _Look] = {
    "pdac": _Look(-45.0, 14.0, 4.0, 0.35, (9.0, 16.0), 0.6),
    "cyst": _Look(np.nan, 2.0, 0.0, 0.05, (7.0, 15.0), 0.7),
    "pannet": _Look(60.0, 8.0, 0.0, 0.08, (6.0, 12.0), 0.35),
}
_CYST_HU = 8.0


def check_subtype_options(subtype: str, difficulty: float) -> None:
    """ValueError for an unknown sub-type or a difficulty outside [0, 1]."""
    if subtype not in ("none", *PANCREAS_LESION_SUBTYPES):
        raise InputError(f"unknown pancreatic lesion sub-type {subtype!r}; choose one of: none, "
                         f"{', '.join(PANCREAS_LESION_SUBTYPES)}")
    if not 0.0 <= float(difficulty) <= 1.0:
        raise InputError(f"difficulty must be in [0, 1], got {difficulty}")


def _looks_at(pancreas_hu: float, difficulty: float) -> Dict[str, _Look]:
    """Each sub-type's parameters moved a fraction `difficulty` towards the sub-types' mean."""
    own = {k: (v if k != "cyst" else replace(v, contrast=_CYST_HU - pancreas_hu)) for k, v in _LOOKS.items()}
    d = float(difficulty)

    def mix(a: float, field: str) -> float:
        return (1 - d) * a + d * float(np.mean([getattr(v, field) for v in own.values()]))

    out = {}
    for k, v in own.items():
        r_lo = (1 - d) * v.radius_mm[0] + d * np.mean([o.radius_mm[0] for o in own.values()])
        r_hi = (1 - d) * v.radius_mm[1] + d * np.mean([o.radius_mm[1] for o in own.values()])
        out[k] = _Look(mix(v.contrast, "contrast"), mix(v.texture_sd, "texture_sd"), mix(v.margin_mm, "margin_mm"),
                       mix(v.irregularity, "irregularity"), (r_lo, r_hi), v.extra_probability * (1 - d))
    return out


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, ...], coarse: int) -> np.ndarray:
    c = rng.uniform(-1, 1, (coarse,) * 3).astype(np.float32)
    f = ndimage.zoom(c, [n / coarse for n in shape], order=1)[: shape[0], : shape[1], : shape[2]]
    if f.shape != tuple(shape):
        f = np.pad(f, [(0, n - m) for n, m in zip(shape, f.shape)], mode="edge")
    return f


def paint_subtype_lesion(hu: np.ndarray, masks: Dict[str, np.ndarray], xyz: Sequence[np.ndarray],
                         spacing: Sequence[float], body: np.ndarray, pancreas, subtype: str, difficulty: float,
                         rng: np.random.Generator, hu_offset: float = 0.0) -> None:
    """Draw one `subtype` lesion in the pancreas (in place): HU into `hu`, its mask into
    `masks['pancreas_tumor']` (cut out of every other structure). `xyz`: world coordinates of the
    voxels (arrays in (k, j, i) order); `pancreas`: the pancreas shape (center, radii, rotation)."""
    x, y, z = xyz
    grid = hu.shape
    pan_mask = masks["pancreas"]
    pancreas_hu = float(np.median(hu[pan_mask])) if pan_mask.any() else float(pancreas.hu)
    look = _looks_at(pancreas_hu, difficulty)[subtype]
    rot_p = pancreas.rotation
    offset = rot_p @ (rng.uniform([-0.55, -0.25, -0.25], [0.55, 0.25, 0.25]) * pancreas.radii)
    center = pancreas.center + offset
    radius = rng.uniform(*look.radius_mm)
    radii = radius * rng.uniform(1 - look.irregularity, 1 + look.irregularity, 3)
    rot = _random_rotation(rng)

    def local(c: np.ndarray, r: np.ndarray, radii_: np.ndarray) -> np.ndarray:
        rel = np.stack([x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])], 0)
        loc = np.tensordot(r.T.astype(np.float32), rel, axes=1)
        return sum((loc[a] / np.float32(radii_[a])) ** 2 for a in range(3))

    bumps = look.irregularity * _smooth_noise(rng, grid, 10)
    near_pancreas = local(pancreas.center, rot_p, pancreas.radii) <= 2.25  # the pancreas grown by half
    lesion = (local(center, rot, radii) <= 1.0 + bumps) & body & near_pancreas
    if not lesion.any():  # a grid too coarse for the lesion: keep its centre voxel
        d2 = (x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2
        lesion.flat[int(np.argmin(np.where(body, d2, np.inf)))] = True
    value = pancreas_hu + look.contrast + rng.normal(0, 8 + 25 * difficulty) + hu_offset
    texture = ndimage.gaussian_filter(rng.normal(0, 1, grid).astype(np.float32), 0.7)
    texture *= look.texture_sd / max(float(texture.std()), 1e-6)
    if look.margin_mm > 0.2:  # ill-defined: the lesion fades into its surroundings
        sigma = [look.margin_mm / 2.0 / s for s in spacing[::-1]]
        w = np.clip(ndimage.gaussian_filter(lesion.astype(np.float32), sigma) * 1.6, 0, 1)
        w[lesion] = 1.0
        w[~(near_pancreas & body)] = 0.0
    else:
        w = lesion.astype(np.float32)
    hu[:] = hu * (1 - w) + (value + texture) * w
    extra = rng.random() < look.extra_probability
    if extra and subtype == "pdac":  # upstream duct dilated, towards the farther end of the pancreas
        axis = rot_p[:, 0] * (1.0 if rot_p[:, 0] @ (pancreas.center - center) >= 0 else -1.0)
        rel = np.stack([x - np.float32(center[0]), y - np.float32(center[1]), z - np.float32(center[2])], 0)
        along = np.tensordot(axis.astype(np.float32), rel, axes=1)
        across = np.sqrt(np.maximum(sum(r ** 2 for r in rel) - along ** 2, 0))
        duct = (along > 0) & (across <= rng.uniform(2.5, 4.0)) & pan_mask & ~lesion
        hu[duct] = 10.0
    elif extra and subtype == "cyst":  # thin enhancing wall
        wall = ndimage.binary_dilation(lesion) & ~lesion & near_pancreas & body
        hu[wall] += 25.0
    elif extra and subtype == "pannet":  # calcification
        idx = np.flatnonzero(lesion)
        hu.flat[rng.choice(idx, size=min(len(idx), int(rng.integers(1, 4))), replace=False)] = rng.uniform(350, 600)
    for name, m in masks.items():
        m &= ~lesion
    masks["pancreas_tumor"] = lesion
