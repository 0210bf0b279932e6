"""TotalSegmentator class ids (v1: 104 classes, v2 `total` task: 117 classes), their target-task
groups (organs, vertebrae, cardiac, muscles, ribs) and their unified names."""
from __future__ import annotations

from typing import Dict, Tuple

from .table import canonical, normalize
from ..errors import InputError

_VERTEBRAE = ("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6", "T5",
              "T4", "T3", "T2", "T1", "C7", "C6", "C5", "C4", "C3", "C2", "C1")

#: TotalSegmentator v2 `total` task, in id order (id = index + 1).
TOTALSEG_V2: Tuple[str, ...] = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
    "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus",
    "trachea", "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate",
    "kidney_cyst_left", "kidney_cyst_right", "sacrum",
    *(f"vertebrae_{v}" for v in _VERTEBRAE),
    "heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",
    "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",
    "brachiocephalic_vein_left", "brachiocephalic_vein_right", "atrial_appendage_left",
    "superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein", "iliac_artery_left",
    "iliac_artery_right", "iliac_vena_left", "iliac_vena_right", "humerus_left", "humerus_right",
    "scapula_left", "scapula_right", "clavicula_left", "clavicula_right", "femur_left", "femur_right",
    "hip_left", "hip_right", "spinal_cord", "gluteus_maximus_left", "gluteus_maximus_right",
    "gluteus_medius_left", "gluteus_medius_right", "gluteus_minimus_left", "gluteus_minimus_right",
    "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right", "brain", "skull",
    *(f"rib_left_{i}" for i in range(1, 13)), *(f"rib_right_{i}" for i in range(1, 13)),
    "sternum", "costal_cartilages",
)

#: TotalSegmentator names that several become one unified class (left/right lobes, cyst sides).
_MERGES: Dict[str, str] = {
    "lung_upper_lobe_left": "lung_left", "lung_lower_lobe_left": "lung_left",
    "lung_upper_lobe_right": "lung_right", "lung_middle_lobe_right": "lung_right",
    "lung_lower_lobe_right": "lung_right",
    "kidney_cyst_left": "kidney_cyst", "kidney_cyst_right": "kidney_cyst",
}


def totalseg_to_unified(name: str) -> str:
    """Unified name of a TotalSegmentator class (synonyms and merges applied)."""
    n = normalize(name)
    return _MERGES.get(n, canonical(n))


def totalseg_v2_id_to_unified() -> Dict[int, str]:
    """{TotalSegmentator v2 id: unified name}."""
    return {i + 1: totalseg_to_unified(n) for i, n in enumerate(TOTALSEG_V2)}


_V1_VERTEBRAE = _VERTEBRAE[1:]  # v1 has no S1: L5 .. C1

#: TotalSegmentator v1 `total` task (104 classes), in id order (id = index + 1).
TOTALSEG_V1: Tuple[str, ...] = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta",
    "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right",
    "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
    "lung_middle_lobe_right", "lung_lower_lobe_right",
    *(f"vertebrae_{v}" for v in _V1_VERTEBRAE),
    "esophagus", "trachea", "heart_myocardium", "heart_atrium_left", "heart_ventricle_left",
    "heart_atrium_right", "heart_ventricle_right", "pulmonary_artery", "brain", "iliac_artery_left",
    "iliac_artery_right", "iliac_vena_left", "iliac_vena_right", "small_bowel", "duodenum", "colon",
    *(f"rib_left_{i}" for i in range(1, 13)), *(f"rib_right_{i}" for i in range(1, 13)),
    "humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
    "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right", "sacrum", "face",
    "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right",
    "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left", "autochthon_right",
    "iliopsoas_left", "iliopsoas_right", "urinary_bladder",
)

#: The five target-task groups TotalSegmentator trains as separate parts.
TOTALSEG_GROUPS: Tuple[str, ...] = ("organs", "vertebrae", "cardiac", "muscles", "ribs")

_V1_CARDIAC = {"esophagus", "trachea", "heart_myocardium", "heart_atrium_left", "heart_ventricle_left",
               "heart_atrium_right", "heart_ventricle_right", "pulmonary_artery", "brain",
               "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
               "small_bowel", "duodenum", "colon", "urinary_bladder", "face"}


def _v1_group(name: str) -> str:
    if name.startswith("vertebrae_"):
        return "vertebrae"
    if name.startswith("rib_"):
        return "ribs"
    if name in _V1_CARDIAC:
        return "cardiac"
    if TOTALSEG_V1.index(name) < 17:
        return "organs"
    return "muscles"


def _v2_group(name: str) -> str:
    i = TOTALSEG_V2.index(name) + 1  # v2 parts are contiguous id ranges
    return ("organs" if i <= 24 else "vertebrae" if i <= 50 else "cardiac" if i <= 68
            else "muscles" if i <= 91 else "ribs")


def totalseg_classes(version: int) -> Tuple[str, ...]:
    """TotalSegmentator class names of `version` (1 or 2) in id order."""
    if version not in (1, 2):
        raise InputError(f"TotalSegmentator version must be 1 or 2, got {version}")
    return TOTALSEG_V1 if version == 1 else TOTALSEG_V2


def totalseg_group(name: str, version: int) -> str:
    """The target-task group ('organs', 'vertebrae', 'cardiac', 'muscles', 'ribs') of a class."""
    classes = totalseg_classes(version)
    if name not in classes:
        raise InputError(f"{name!r} is not a TotalSegmentator v{version} class")
    return _v1_group(name) if version == 1 else _v2_group(name)
