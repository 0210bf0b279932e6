"""Procedural abdominal CT phantoms with realistic Hounsfield units.

Anatomy is defined in patient (LPS) millimetres: +x patient left, +y posterior, +z superior, the
body centred on the origin. A case is sampled on any voxel grid (size, spacing, orientation), so
left/right always follows the patient, never the array index. Every case is a pure function of
its seed. Layer 1 of the generator (arrays); `dataset.py` writes files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .subtype_lesion import (PANCREAS_LESION_SUBTYPES, SUBTYPE_SEG_CLASSES, check_subtype_options,  # noqa: F401
                             paint_subtype_lesion)
from ..errors import InputError

#: Structures the phantom draws (the label order of `--classes all`). Painting order is that of
#: `PhantomGenerator._anatomy` (later structures occlude earlier ones; tumours last, inside their host).
PHANTOM_CLASSES: Tuple[str, ...] = (
    "iliopsoas_left", "iliopsoas_right", "autochthon_left", "autochthon_right", "vertebrae",
    "liver", "spleen", "kidney_left", "kidney_right", "stomach", "pancreas", "gall_bladder",
    "aorta", "postcava", "liver_tumor", "kidney_tumor", "kidney_cyst", "pancreas_tumor",
    "esophagus", "adrenal_gland_left", "adrenal_gland_right", "portal_vein_and_splenic_vein",
)

#: Axis-direction codes (nibabel convention: the letter a voxel axis increases towards).
_AXES = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def direction_from_code(code: str) -> np.ndarray:
    """3x3 direction matrix (columns = voxel axes i, j, k in LPS) from a code like 'RAS' or 'LPS'."""
    code = code.upper()
    if len(code) != 3 or any(c not in _AXES for c in code) or \
            len({int(np.flatnonzero(_AXES[c])[0]) for c in code}) != 3:
        raise InputError(f"orientation {code!r} is not a valid 3-letter code such as LPS or RAS")
    return np.array([_AXES[c] for c in code], dtype=float).T


@dataclass
class Phantom:
    """One sampled case. Arrays are in SimpleITK order (z, y, x) = (k, j, i)."""

    image: np.ndarray  # int16 HU
    masks: Dict[str, np.ndarray]  # class name -> bool array, after occlusion by later structures
    spacing: Tuple[float, float, float]  # (i, j, k) = (x, y, z) voxel size in mm
    origin: Tuple[float, float, float]
    direction: np.ndarray  # 3x3, columns are the voxel axes in LPS
    hosts: Dict[str, str] = field(default_factory=dict)  # tumour drawn -> the organ structure holding it
    pancreas_lesion: Optional[str] = None  # sub-type drawn as `pancreas_tumor` ("none": lesion-free); None: legacy

    def label_map(self, classes: Sequence[str], tumours_in_host: bool = False) -> np.ndarray:
        """uint8 label map with `classes[i]` -> i + 1; other structures are background.

        With `tumours_in_host`, a tumour that is not in `classes` is labelled as its host organ
        when that is (a source annotating the liver but not its lesions labels them liver)."""
        out = np.zeros(self.image.shape, np.uint8)
        for name in PHANTOM_CLASSES:  # masks are disjoint: tumours were cut out of their organs
            if name in classes:
                out[self.masks[name]] = classes.index(name) + 1
        if tumours_in_host:
            for tumour, host in self.hosts.items():
                if tumour not in classes and host in classes:
                    out[self.masks[tumour]] = classes.index(host) + 1
        seg_class = SUBTYPE_SEG_CLASSES.get(self.pancreas_lesion or "")
        if seg_class is not None and seg_class in classes:  # a sub-type lesion labelled by its sub-type
            out[self.masks["pancreas_tumor"]] = classes.index(seg_class) + 1
        return out


@dataclass
class _Shape:
    name: str
    center: np.ndarray
    radii: np.ndarray
    hu: float
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    z_range: Optional[Tuple[float, float]] = None  # infinite cylinder along z when radii[2] is inf
    host: Optional[str] = None  # tumours: drawn only inside this structure


def _tube(name: str, start: np.ndarray, end: np.ndarray, radius: float, hu: float) -> _Shape:
    """An elongated ellipsoid from `start` to `end` (mm), e.g. a vessel segment."""
    axis = end - start
    length = float(np.linalg.norm(axis))
    u = axis / length
    a = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(a, u)
    e1 /= np.linalg.norm(e1)
    rot = np.stack([e1, np.cross(u, e1), u], 1)  # columns: local axes in LPS, local z along the tube
    return _Shape(name, (start + end) / 2, np.array([radius, radius, length / 2 + radius / 2]), hu, rot)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    ax, ay, az = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class PhantomGenerator:
    """Samples phantom cases on a given grid; `PhantomGenerator(seed)(shape, spacing, orientation)`."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    # ------------------------------------------------------------------ anatomy
    def _anatomy(self) -> List[_Shape]:
        r = self.rng
        s = r.uniform(0.9, 1.1, 3)  # body scale per axis
        shift = np.array([*r.uniform(-8, 8, 2), r.uniform(-15, 15)])

        def pos(x, y, z, jitter=6.0):
            return (np.array([x, y, z]) + r.normal(0, jitter / 2, 3)) * s + shift

        def rad(a, b, c, var=0.12):
            return np.array([a, b, c]) * r.uniform(1 - var, 1 + var, 3) * s

        inf = np.inf
        shapes = [
            _Shape("iliopsoas_left", pos(42, 40, -60), rad(16, 14, 90), 50.0, _rotation(r, 6)),
            _Shape("iliopsoas_right", pos(-42, 40, -60), rad(16, 14, 90), 50.0, _rotation(r, 6)),
            _Shape("autochthon_left", pos(30, 85, 0, 3), rad(20, 16, inf), 52.0),
            _Shape("autochthon_right", pos(-30, 85, 0, 3), rad(20, 16, inf), 52.0),
            _Shape("vertebrae", pos(0, 55, 0, 3), rad(19, 17, inf, 0.08), r.uniform(450, 750)),
            _Shape("liver", pos(-60, 5, 70), rad(75, 65, 60), r.uniform(90, 110), _rotation(r, 10)),
            _Shape("spleen", pos(82, 45, 75), rad(28, 40, 45), r.uniform(100, 120), _rotation(r, 12)),
            _Shape("kidney_left", pos(70, 52, 5), rad(26, 24, 50), r.uniform(140, 180), _rotation(r, 12)),
            _Shape("kidney_right", pos(-70, 52, -5), rad(26, 24, 50), r.uniform(140, 180), _rotation(r, 12)),
            _Shape("stomach", pos(45, -30, 85), rad(42, 32, 38), r.uniform(25, 40), _rotation(r, 15)),
            _Shape("pancreas", pos(15, 10, 30), rad(55, 12, 12), r.uniform(80, 100), _rotation(r, 8)),
            _Shape("gall_bladder", pos(-55, -45, 35), rad(14, 14, 28), r.uniform(5, 20), _rotation(r, 15)),
            _Shape("aorta", pos(12, 25, 0, 3), rad(11, 11, inf, 0.1), r.uniform(170, 240)),
            _Shape("postcava", pos(-22, 25, 0, 3), rad(13, 11, inf, 0.1), r.uniform(140, 180)),
        ]
        # structures added later draw from their own stream, so the others keep their seeds' shapes
        shapes[-2:-2] = self._upper_abdomen(s, shift)
        by = {sh.name: sh for sh in shapes}
        by["aorta"].z_range = (-70 * s[2] + shift[2], 200)
        by["postcava"].z_range = (-75 * s[2] + shift[2], 110 * s[2] + shift[2])
        # tumours: inside their host organ, each present with probability 0.8
        for name, host, rmin, rmax, hu in (("liver_tumor", "liver", 8, 20, (30, 60)),
                                           ("kidney_tumor", "kidney_left", 7, 14, (50, 90)),
                                           ("kidney_cyst", "kidney_right", 5, 11, (0, 15)),
                                           ("pancreas_tumor", "pancreas", 5, 9, (35, 60))):
            if r.random() < 0.8:
                if name == "kidney_tumor" and r.random() < 0.5:
                    host = "kidney_right"
                h = by[host]
                offset = h.rotation @ (r.uniform(-0.45, 0.45, 3) * h.radii)
                radius = r.uniform(rmin, rmax)
                shapes.append(_Shape(name, h.center + offset, np.array([radius] * 3) * r.uniform(0.85, 1.15, 3),
                                     r.uniform(*hu), _rotation(r, 30), host=host))
        return shapes

    def _upper_abdomen(self, s: np.ndarray, shift: np.ndarray) -> List[_Shape]:
        """Esophagus, adrenal glands, portal + splenic vein (painted before aorta and postcava)."""
        r = np.random.default_rng([self.seed, 1])

        def pos(x, y, z, jitter=4.0):
            return (np.array([x, y, z]) + r.normal(0, jitter / 2, 3)) * s + shift

        def rad(a, b, c, var=0.12):
            return np.array([a, b, c]) * r.uniform(1 - var, 1 + var, 3) * s

        eso = _Shape("esophagus", pos(14, 8, 0, 3), rad(8, 6, np.inf), r.uniform(40, 60))
        eso.z_range = (60 * s[2] + shift[2], 200)
        confluence, hilum, splenic = pos(-5, 3, 35), pos(-40, 5, 68), pos(62, 35, 62)
        vein_hu = r.uniform(160, 200)
        return [
            eso,
            _Shape("adrenal_gland_left", pos(52, 40, 60), rad(4, 13, 14), r.uniform(45, 70), _rotation(r, 20)),
            _Shape("adrenal_gland_right", pos(-48, 38, 58), rad(4, 12, 14), r.uniform(45, 70), _rotation(r, 20)),
            _tube("portal_vein_and_splenic_vein", confluence, hilum, 7.0 * float(s[0]), vein_hu),
            _tube("portal_vein_and_splenic_vein", confluence, splenic, 5.0 * float(s[0]), vein_hu),
        ]

    # ------------------------------------------------------------------ sampling
    def __call__(self, shape: Sequence[int] = (64, 64, 64), spacing: Sequence[float] = (5.0, 5.0, 5.0),
                 orientation: str = "LPS", noise_hu: float = 12.0, hu_offsets: Optional[Mapping[str, float]] = None,
                 slice_thickness: Optional[float] = None, pancreas_lesion: Optional[str] = None,
                 difficulty: float = 0.5) -> Phantom:
        """Sample a case on a grid of `shape` (x, y, z) voxels of `spacing` mm in `orientation`.

        `hu_offsets` ({structure: HU}) shifts structures' attenuation from the base values (about
        portal-venous contrast), e.g. for another contrast phase. `slice_thickness` (mm) blurs along
        the patient's z axis as a slice of that thickness does (a box profile on top of the ~2 mm
        in-plane blur); None keeps the isotropic blur.

        `pancreas_lesion` ("pdac", "cyst", "pannet" or "none") replaces the generic pancreatic tumour
        by a lesion of that sub-type (mask `pancreas_tumor`), or by none; `difficulty` in [0, 1] moves
        the sub-types' intensity, texture and margin towards one another (see `subtype_lesion.py`).
        None (the default) keeps the legacy phantom, identical for every seed.
        """
        shape = tuple(int(v) for v in shape)
        spacing = tuple(float(v) for v in spacing)
        if len(shape) != 3 or min(shape) < 4:
            raise InputError(f"shape must be 3 sizes >= 4, got {shape}")
        if len(spacing) != 3 or min(spacing) <= 0:
            raise InputError(f"spacing must be 3 positive values, got {spacing}")
        if slice_thickness is not None and not slice_thickness > 0:
            raise InputError(f"slice thickness must be positive, got {slice_thickness}")
        offsets = dict(hu_offsets or {})
        unknown = sorted(set(offsets) - set(PHANTOM_CLASSES))
        if unknown:
            raise InputError(f"HU offsets name structures the phantom does not draw: {', '.join(unknown)}")
        if pancreas_lesion is not None:
            check_subtype_options(pancreas_lesion, difficulty)
        d = direction_from_code(orientation)
        ext = np.array(spacing) * (np.array(shape) - 1)
        origin = -d @ (ext / 2)
        # world coordinates of every voxel, arrays in (k, j, i) order
        k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape[::-1]), indexing="ij")
        world = [origin[a] + d[a, 0] * spacing[0] * i + d[a, 1] * spacing[1] * j + d[a, 2] * spacing[2] * k
                 for a in range(3)]
        x, y, z = (w.astype(np.float32) for w in world)
        del i, j, k, world
        grid_shape = x.shape
        wobble = self._smooth_field(grid_shape, 0.12)

        rng = self.rng
        hu = np.full(grid_shape, -1000.0, np.float32)
        # habitus (own stream): body size, position and subcutaneous fat differ between patients
        hab = np.random.default_rng([self.seed, 2])
        bx, by = 150.0 * hab.uniform(0.9, 1.1), 110.0 * hab.uniform(0.9, 1.1)
        fat = hab.uniform(7.0, 18.0)
        cx, cy = hab.normal(0.0, 3.0, 2)
        xb, yb = x - np.float32(cx), y - np.float32(cy)
        body = (xb / bx) ** 2 + (yb / by) ** 2 <= 1 + 0.03 * wobble
        wall = (xb / (bx - fat)) ** 2 + (yb / (by - fat)) ** 2 <= 1 + 0.03 * wobble
        hu[body] = rng.uniform(-110, -90)  # subcutaneous fat
        hu[body & ~wall & ((xb / (bx - fat + 4)) ** 2 + (yb / (by - fat + 5)) ** 2 <= 1)] = 45.0  # wall muscle
        cavity = wall
        bowel = self._smooth_field(grid_shape, 1.0, coarse=10)  # bowel-like texture, unlabelled
        hu[cavity] = np.where(bowel[cavity] > 0.35, 30.0, np.where(bowel[cavity] < -0.9, -800.0, -85.0))

        masks: Dict[str, np.ndarray] = {}
        anatomy = self._anatomy()
        if pancreas_lesion is not None:  # the generic tumour makes way for the sub-type lesion
            anatomy = [sh for sh in anatomy if sh.name != "pancreas_tumor"]
        for sh in anatomy:
            rel = np.stack([x - sh.center[0], y - sh.center[1], z - sh.center[2]], 0)
            local = np.tensordot(sh.rotation.T, rel, axes=1)
            f = np.zeros(grid_shape, np.float32)
            for a in range(3):
                if np.isfinite(sh.radii[a]):
                    f += (local[a] / sh.radii[a]) ** 2
            m = f <= 1.0 + 0.15 * wobble
            if sh.z_range is not None:
                m &= (z >= sh.z_range[0]) & (z <= sh.z_range[1])
            m &= body
            if sh.host is not None:  # a tumour lies inside its organ
                m &= masks[sh.host]
            if sh.name == "vertebrae":  # discs every ~32 mm are soft tissue, not vertebra
                disc = np.abs(((z - sh.center[2]) % 32.0) - 16.0) < 3.5
                hu[m & disc] = 80.0
                m &= ~disc
            for other in masks.values():  # later structures occlude earlier ones
                other &= ~m
            masks[sh.name] = masks[sh.name] | m if sh.name in masks else m  # a class may have several parts
            hu[m] = sh.hu + offsets.get(sh.name, 0.0)
            if sh.name == "stomach":  # air cap anteriorly (-y), as in a supine patient
                air = m & (local[1] < -0.55 * sh.radii[1])
                hu[air] = -900.0
        for name in PHANTOM_CLASSES:
            masks.setdefault(name, np.zeros(grid_shape, bool))
        if pancreas_lesion not in (None, "none"):
            pancreas = next(sh for sh in anatomy if sh.name == "pancreas")
            paint_subtype_lesion(hu, masks, (x, y, z), spacing, body, pancreas, pancreas_lesion, difficulty,
                                 np.random.default_rng([self.seed, 3]), offsets.get("pancreas_tumor", 0.0))
        sigma = [0.6 * 3.0 / max(sp, 1.0) for sp in spacing[::-1]]  # partial volume, ~2 mm blur
        if slice_thickness is not None:
            a = int(np.argmax(np.abs(d[2])))  # the voxel axis along the patient's z
            box = slice_thickness / np.sqrt(12.0) / spacing[a]  # sd of a box profile, in voxels
            sigma[2 - a] = float(np.hypot(sigma[2 - a], box))
        hu = ndimage.gaussian_filter(hu, sigma)
        hu += rng.normal(0, noise_hu, grid_shape).astype(np.float32)
        image = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
        hosts = {sh.name: sh.host for sh in anatomy if sh.host is not None}
        if pancreas_lesion not in (None, "none"):
            hosts["pancreas_tumor"] = "pancreas"
        return Phantom(image, masks, spacing, tuple(float(v) for v in origin), d, hosts, pancreas_lesion)

    def _smooth_field(self, shape: Tuple[int, ...], amplitude: float, coarse: int = 5) -> np.ndarray:
        """Low-frequency random field in [-amplitude, amplitude] (order-1 upsampling of a coarse grid)."""
        c = self.rng.uniform(-1, 1, (coarse,) * 3).astype(np.float32)
        f = ndimage.zoom(c, [n / coarse for n in shape], order=1)
        f = f[: shape[0], : shape[1], : shape[2]]
        if f.shape != tuple(shape):
            f = np.pad(f, [(0, n - m) for n, m in zip(shape, f.shape)], mode="edge")
        return f * amplitude

