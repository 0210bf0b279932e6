"""The unified label table: the single source of truth for class names, ids and synonyms.

Pure data plus derived look-ups; no torch, no numpy. The first 32 rows are AbdomenAtlas 1.1 in
its own id order (25 anatomical structures, then 7 tumour types). Further rows name structures
outside the 32 (TotalSegmentator muscles, bones, vessels, cardiac structures) so that target tasks
can name them; they have no atlas id.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple
from ..errors import InputError


@dataclass(frozen=True)
class LabelClass:
    """One class of the unified label space."""

    name: str
    atlas_id: Optional[int] = None  # id in AbdomenAtlas 1.1 (1..32), None outside the 32
    group: str = "organ"  # organ | vessel | tumor | muscle | bone | cardiac | other
    host: Optional[str] = None  # tumours: the organ whose voxels they belong to
    synonyms: Tuple[str, ...] = ()
    parts: Tuple[str, ...] = ()  # a union class: the classes whose voxels together make it up


def _c(name: str, atlas_id: Optional[int] = None, group: str = "organ", host: Optional[str] = None,
       synonyms: Iterable[str] = (), parts: Iterable[str] = ()) -> LabelClass:
    return LabelClass(name, atlas_id, group, host, tuple(synonyms), tuple(parts))


CLASSES: Tuple[LabelClass, ...] = (
    # --- AbdomenAtlas 1.1: 25 anatomical structures -------------------------------------------
    _c("aorta", 1, "vessel"),
    _c("gall_bladder", 2, synonyms=("gallbladder",)),
    _c("kidney_left", 3, synonyms=("left_kidney", "kidney_l")),
    _c("kidney_right", 4, synonyms=("right_kidney", "kidney_r")),
    _c("liver", 5),
    _c("pancreas", 6),
    _c("postcava", 7, "vessel", synonyms=("inferior_vena_cava", "ivc", "vena_cava_inferior")),
    _c("spleen", 8),
    _c("stomach", 9),
    _c("adrenal_gland_left", 10, synonyms=("left_adrenal_gland", "adrenal_left", "left_adrenal")),
    _c("adrenal_gland_right", 11, synonyms=("right_adrenal_gland", "adrenal_right", "right_adrenal")),
    _c("bladder", 12, synonyms=("urinary_bladder",)),
    _c("celiac_trunk", 13, "vessel", synonyms=("celiac_truck",)),
    _c("colon", 14),
    _c("duodenum", 15),
    _c("esophagus", 16, synonyms=("oesophagus",)),
    _c("femur_left", 17, "bone", synonyms=("head_of_femur_left", "left_femur", "femur_head_left")),
    _c("femur_right", 18, "bone", synonyms=("head_of_femur_right", "right_femur", "femur_head_right")),
    _c("hepatic_vessel", 19, "vessel", synonyms=("hepatic_vessels",)),
    _c("intestine", 20, synonyms=("small_bowel", "small_intestine")),
    _c("lung_left", 21, synonyms=("left_lung",)),
    _c("lung_right", 22, synonyms=("right_lung",)),
    _c("portal_vein_and_splenic_vein", 23, "vessel",
       synonyms=("portal_vein_splenic_vein", "portal_and_splenic_vein", "portal_splenic_vein")),
    _c("prostate", 24, synonyms=("prostate_uterus", "prostate_or_uterus")),
    _c("rectum", 25),
    # --- AbdomenAtlas 1.1: 7 tumour types -------------------------------------------------------
    _c("kidney_tumor", 26, "tumor", host="kidney", synonyms=("kidney_tumour", "renal_tumor")),
    _c("liver_tumor", 27, "tumor", host="liver", synonyms=("liver_tumour", "hepatic_tumor")),
    _c("pancreas_tumor", 28, "tumor", host="pancreas", synonyms=("pancreas_tumour", "pancreatic_tumor")),
    _c("hepatic_vessel_tumor", 29, "tumor", host="liver", synonyms=("hepatic_vessel_tumour",)),
    _c("lung_tumor", 30, "tumor", host="lung", synonyms=("lung_tumour", "lung_nodule")),
    _c("colon_tumor", 31, "tumor", host="colon", synonyms=("colon_tumour", "colon_cancer")),
    _c("kidney_cyst", 32, "tumor", host="kidney", synonyms=("renal_cyst",)),
    # --- outside the 32: named so target tasks (and TotalSegmentator) can use them -------------
    _c("kidney", synonyms=("kidneys",), parts=("kidney_left", "kidney_right")),  # KiTS, AbdomenCT-1K
    _c("lung", synonyms=("lungs",), parts=("lung_left", "lung_right")),
    _c("adrenal_gland", synonyms=("adrenal", "adrenal_glands"), parts=("adrenal_gland_left", "adrenal_gland_right")),
    _c("vertebrae", group="bone", synonyms=("spine", "vertebra", "vertebral_column")),
    _c("iliopsoas_left", group="muscle", synonyms=("psoas_left", "left_psoas")),
    _c("iliopsoas_right", group="muscle", synonyms=("psoas_right", "right_psoas")),
    _c("autochthon_left", group="muscle", synonyms=("erector_spinae_left",)),
    _c("autochthon_right", group="muscle", synonyms=("erector_spinae_right",)),
    _c("gluteus_maximus_left", group="muscle"),
    _c("gluteus_maximus_right", group="muscle"),
    _c("gluteus_medius_left", group="muscle"),
    _c("gluteus_medius_right", group="muscle"),
    _c("gluteus_minimus_left", group="muscle"),
    _c("gluteus_minimus_right", group="muscle"),
    _c("heart", group="cardiac"),
    _c("atrial_appendage_left", group="cardiac"),
    _c("pulmonary_vein", group="cardiac"),
    _c("superior_vena_cava", group="vessel", synonyms=("svc",)),
    _c("brachiocephalic_trunk", group="vessel"),
    _c("bowel", synonyms=("bowels",)),  # RSNA: small + large bowel in one label
    _c("bone", group="bone"),  # CT-ORG
    _c("brain"),
    _c("trachea"),
    # --- appended for dataset conversion ------------------------------------------------------
    _c("tumor", group="tumor", synonyms=("lesion", "pan_cancer_lesion")),  # FLARE23 lesion, host unknown
)
# Note: vertebrae_* , rib_* and every other TotalSegmentator name are accepted as novel classes
# by `canonical` even without a row; rows exist for what the project itself generates or maps.


def normalize(name: str) -> str:
    """Lower-case, spaces / hyphens / dots to underscores, collapse repeats."""
    s = re.sub(r"[\s\-./]+", "_", name.strip().lower())
    return re.sub(r"_+", "_", s).strip("_")


BY_NAME: Dict[str, LabelClass] = {c.name: c for c in CLASSES}
SYNONYMS: Dict[str, str] = {normalize(s): c.name for c in CLASSES for s in c.synonyms}
ATLAS_CLASSES: Tuple[str, ...] = tuple(c.name for c in sorted(
    (c for c in CLASSES if c.atlas_id is not None), key=lambda c: c.atlas_id))
ATLAS_IDS: Dict[str, int] = {c.name: c.atlas_id for c in CLASSES if c.atlas_id is not None}
TUMOR_HOSTS: Dict[str, str] = {c.name: c.host for c in CLASSES if c.host}
PARTS: Dict[str, Tuple[str, ...]] = {c.name: c.parts for c in CLASSES if c.parts}


def canonical(name: str) -> str:
    """The unified name of `name` (a synonym or a differently spelled name).

    Names that are not in the table come back normalised: they are novel classes a target task
    may define. Raises ValueError for an empty name or the reserved name 'background'.
    """
    n = normalize(name)
    if not n:
        raise InputError(f"empty class name: {name!r}")
    if n in ("background", "bg"):
        raise InputError("'background' is label 0 and not a class name")
    if n in BY_NAME:
        return n
    return SYNONYMS.get(n, n)


def is_known(name: str) -> bool:
    """True if `name` (or a synonym) is a row of the table."""
    return canonical(name) in BY_NAME


def atlas_id(name: str) -> Optional[int]:
    """AbdomenAtlas 1.1 id of `name`, or None outside the 32 classes."""
    return ATLAS_IDS.get(canonical(name))


def host_of(name: str) -> Optional[str]:
    """The organ a tumour class lies in (e.g. liver_tumor -> liver), or None."""
    return TUMOR_HOSTS.get(canonical(name))


def parts_of(name: str) -> Tuple[str, ...]:
    """The classes a union class is made of (kidney -> kidney_left, kidney_right), else ()."""
    return PARTS.get(canonical(name), ())


def canonical_labels(names: Iterable[str]) -> List[str]:
    """Canonicalise a list of class names; raises ValueError on duplicates after mapping."""
    out: List[str] = []
    for n in names:
        c = canonical(n)
        if c in out:
            raise InputError(f"class {n!r} maps to {c!r}, which is already in the list")
        out.append(c)
    return out
