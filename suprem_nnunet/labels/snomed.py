"""SNOMED CT concepts of the unified classes, for DICOM-SEG segment descriptions (pure data).

Code values and meanings are those of DICOM PS3.16 (Content Mapping Resource), as pydicom ships them
in `pydicom.sr.codedict.codes.SCT` (tests/integration/test_dicom_seg.py checks every entry against it).
Categories follow DICOM CID 7150 (Segmentation Property Categories): organs, vessels, bones and
muscles are "Anatomical Structure", tumours and cysts "Morphologically Abnormal Structure" with
their host organ as the anatomic region. Sided classes carry the Left / Right laterality as a
property type modifier. Classes without a concept of their own here (e.g. hepatic_vessel,
portal_vein_and_splenic_vein, prostate, which AbdomenAtlas uses for prostate or uterus) get the
generic type of their group: Organ, Blood Vessel, Bone, Muscle or Neoplasm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .table import BY_NAME, canonical

Code = Tuple[str, str]  # (SNOMED CT code value, code meaning); the scheme is always "SCT"

ANATOMICAL_STRUCTURE: Code = ("91723000", "Anatomical Structure")
ABNORMAL_STRUCTURE: Code = ("49755003", "Morphologically Abnormal Structure")
LEFT: Code = ("7771000", "Left")
RIGHT: Code = ("24028007", "Right")
NEOPLASM: Code = ("108369006", "Neoplasm")
CYST: Code = ("367643001", "Cyst")

_ORGANS: Dict[str, Code] = {
    "aorta": ("15825003", "Aorta"),
    "gall_bladder": ("28231008", "Gallbladder"),
    "kidney": ("64033007", "Kidney"),
    "liver": ("10200004", "Liver"),
    "pancreas": ("15776009", "Pancreas"),
    "postcava": ("64131007", "Inferior vena cava"),
    "spleen": ("78961009", "Spleen"),
    "stomach": ("69695003", "Stomach"),
    "adrenal_gland": ("23451007", "Adrenal gland"),
    "bladder": ("89837001", "Bladder"),
    "celiac_trunk": ("57850000", "Celiac Axis"),
    "colon": ("71854001", "Colon"),
    "duodenum": ("38848004", "Duodenum"),
    "esophagus": ("32849002", "Esophagus"),
    "femur": ("71341001", "Femur"),
    "intestine": ("30315005", "Small intestine"),
    "lung": ("39607008", "Lung"),
    "rectum": ("34402009", "Rectum"),
    "vertebrae": ("51282000", "Vertebra"),
    "autochthon": ("44947003", "Erector spinae muscle"),
    "heart": ("80891009", "Heart"),
    "atrial_appendage_left": ("33626005", "Left auricular appendage"),
    "pulmonary_vein": ("122972007", "Pulmonary vein"),
    "superior_vena_cava": ("48345005", "Superior vena cava"),
    "brachiocephalic_trunk": ("12691009", "brachiocephalic trunk"),
    "bone": ("272673000", "Bone"),
    "brain": ("12738006", "Brain"),
    "trachea": ("44567001", "Trachea"),
}
_GENERIC: Dict[str, Code] = {"organ": ("91772007", "Organ"), "vessel": ("59820001", "Blood Vessel"),
                             "bone": ("272673000", "Bone"), "muscle": ("71616004", "Muscle"),
                             "cardiac": ("91772007", "Organ"), "other": ("91772007", "Organ")}
_TUMOUR_TYPES: Dict[str, Code] = {"kidney_cyst": CYST}


@dataclass(frozen=True)
class SegmentConcept:
    """The coded description of one class in a DICOM-SEG."""

    category: Code
    type: Code
    laterality: Optional[Code] = None  # a property type modifier (Left / Right)
    region: Optional[Code] = None  # anatomic region (the host organ of a tumour)
    generic: bool = False  # True: the group's generic type (no concept of the class itself here)


def _sided(name: str) -> Tuple[str, Optional[Code]]:
    for suffix, side in (("_left", LEFT), ("_right", RIGHT)):
        if name.endswith(suffix):
            return name[: -len(suffix)], side
    return name, None


def segment_concept(name: str) -> SegmentConcept:
    """The SNOMED CT concept of a class (any spelling the label table accepts)."""
    c = canonical(name)
    row = BY_NAME.get(c)
    if row is not None and row.group == "tumor":
        host = row.host
        region = _ORGANS.get(host) if host else None
        return SegmentConcept(ABNORMAL_STRUCTURE, _TUMOUR_TYPES.get(c, NEOPLASM), None, region)
    if c in _ORGANS:
        return SegmentConcept(ANATOMICAL_STRUCTURE, _ORGANS[c])
    base, side = _sided(c)
    if side is not None and base in _ORGANS:
        return SegmentConcept(ANATOMICAL_STRUCTURE, _ORGANS[base], side)
    group = row.group if row is not None else "other"
    return SegmentConcept(ANATOMICAL_STRUCTURE, _GENERIC.get(group, _GENERIC["other"]), side, None, True)
