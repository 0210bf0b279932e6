"""Source profiles: phantom datasets that mimic the mix of real pre-training sources.

Each profile is plain data: the classes a real source annotates (everything else the phantom draws
is in the image but labelled background, as in the real partially labelled source), its voxel
spacing (thick slices included), contrast phase and noise. Spacings are phantom-scale (a case is
~64³ voxels); the real source's typical spacing is in the description. Phase offsets are HU added
to the phantom's base attenuation, which is about portal-venous.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

from ..labels import host_of
from .phantom import PHANTOM_CLASSES
from ..errors import InputError

#: HU offsets from the phantom's base attenuation (about portal-venous) per contrast phase.
PHASE_OFFSETS: Mapping[str, Mapping[str, float]] = {
    "portal_venous": {},
    # late arterial: aorta and renal cortex bright, portal system and IVC not yet filled
    "arterial": {"aorta": 130.0, "liver": -30.0, "spleen": 15.0, "kidney_left": 40.0, "kidney_right": 40.0,
                 "pancreas": 25.0, "postcava": -60.0, "portal_vein_and_splenic_vein": -50.0,
                 "adrenal_gland_left": 10.0, "adrenal_gland_right": 10.0, "kidney_tumor": 40.0,
                 "liver_tumor": -5.0, "pancreas_tumor": -5.0},
    # no contrast: organs and blood at 30-60 HU
    "native": {"aorta": -165.0, "liver": -45.0, "spleen": -65.0, "kidney_left": -125.0, "kidney_right": -125.0,
               "pancreas": -50.0, "postcava": -120.0, "portal_vein_and_splenic_vein": -135.0,
               "adrenal_gland_left": -30.0, "adrenal_gland_right": -30.0, "esophagus": -15.0,
               "liver_tumor": -10.0, "kidney_tumor": -35.0, "pancreas_tumor": -10.0},
}


@dataclass(frozen=True)
class SourceProfile:
    """A phantom source mimicking a real one."""

    name: str  # CLI name (`suprem_synth --source-profile NAME`)
    source: str  # the real source it mimics
    classes: Tuple[str, ...]  # unified names the label maps hold, in label-id order
    spacing: Tuple[float, float, float]  # phantom voxel size (x, y, z) in mm
    shape: Tuple[int, int, int]  # voxels (x, y, z)
    slice_thickness: float  # mm; above the z spacing's 1:1 means overlapping slices
    phase: str  # key of PHASE_OFFSETS
    noise_hu: float  # sd of the image noise
    dataset_name: str  # default nnU-Net dataset name (and case-id prefix)
    description: str  # the real source's situation

    @property
    def hu_offsets(self) -> Mapping[str, float]:
        return PHASE_OFFSETS[self.phase]



_BTCV = ("spleen", "kidney_right", "kidney_left", "gall_bladder", "esophagus", "liver", "stomach", "aorta",
         "postcava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right", "adrenal_gland_left")
_TOTALSEG = tuple(c for c in PHANTOM_CLASSES if host_of(c) is None)  # every structure, no lesions

PROFILES: Tuple[SourceProfile, ...] = (
    SourceProfile("btcv", "BTCV (Multi-Atlas Labeling Beyond the Cranial Vault)", _BTCV, (5.0, 5.0, 7.5),
                  (64, 64, 40), 7.5, "portal_venous", 12.0, "PhantomBTCV",
                  "13 abdominal organs, portal-venous phase; real: 0.59-0.98 mm in-plane, 2.5-5 mm slices"),
    SourceProfile("lits", "LiTS (Liver Tumor Segmentation)", ("liver", "liver_tumor"), (4.5, 4.5, 12.0),
                  (72, 72, 24), 12.0, "portal_venous", 8.0, "PhantomLiTS",
                  "liver + liver tumours only, mostly portal-venous, multi-centre; real: 0.56-1.0 mm "
                  "in-plane, 0.45-6 mm slices (many thick 5 mm scans)"),
    SourceProfile("kits", "KiTS (Kidney Tumor Segmentation)",
                  ("kidney_left", "kidney_right", "kidney_tumor", "kidney_cyst"), (4.0, 4.0, 5.0),
                  (80, 80, 48), 5.0, "arterial", 15.0, "PhantomKiTS",
                  "kidneys + renal tumours + cysts, late-arterial phase; real: 0.44-1.04 mm in-plane, "
                  "0.5-5 mm slices"),
    SourceProfile("msd_pancreas", "MSD Task07 Pancreas", ("pancreas", "pancreas_tumor"), (5.0, 5.0, 6.0),
                  (64, 64, 44), 6.0, "portal_venous", 12.0, "PhantomMSDPancreas",
                  "pancreas + pancreatic tumour, portal-venous phase; real: 0.6-0.98 mm in-plane, "
                  "2.5 mm slices (0.7-7.5)"),
    SourceProfile("totalsegmentator", "TotalSegmentator", _TOTALSEG, (6.0, 6.0, 6.0), (54, 54, 52), 6.0,
                  "native", 20.0, "PhantomTotalSeg",
                  "every structure labelled (no lesions: they count as their organ), routine clinical "
                  "scans of mixed phases, modelled as non-contrast; real: resampled to 1.5 mm isotropic"),
)
BY_PROFILE: Dict[str, SourceProfile] = {p.name: p for p in PROFILES}


def get_profile(name: str) -> SourceProfile:
    """The profile called `name`; ValueError naming the known ones otherwise."""
    key = name.strip().lower().replace("-", "_")
    if key not in BY_PROFILE:
        raise InputError(f"unknown source profile {name!r}; known profiles: {', '.join(BY_PROFILE)}")
    return BY_PROFILE[key]


def profile_table() -> List[str]:
    """The profiles as text rows (for `suprem_synth --list-profiles`)."""
    rows = [("profile", "mimics", "phase", "spacing mm", "slice mm", "noise HU", "voxels", "classes")]
    for p in PROFILES:
        rows.append((p.name, p.source.split(" (")[0], p.phase, "x".join(f"{v:g}" for v in p.spacing),
                     f"{p.slice_thickness:g}", f"{p.noise_hu:g}", "x".join(map(str, p.shape)),
                     f"{len(p.classes)}: {', '.join(p.classes)}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
