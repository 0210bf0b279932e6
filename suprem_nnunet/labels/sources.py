"""Label maps of the public source datasets: {source label id: source label name}. Pure data.

Names are the source's own (spelled so that `table.canonical` recognises them); `unified_name`
turns them into unified names, so nothing here retypes the unified table. A name whose unified
class has `_left`/`_right` rows (kidney, lung, adrenal_gland) labels both sides in one id; the
converters split it by the patient's side. `None` marks a source value that is not a class
(DAP Atlas 'Left to annotate'): it becomes background.

Facts are from each dataset's documentation as remembered by the authors (see
dataset_conversion/README.md for which could not be verified).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from .table import ATLAS_CLASSES, BY_NAME, normalize
from .totalseg import TOTALSEG_V1, TOTALSEG_V2, totalseg_to_unified

LabelMap = Mapping[int, Optional[str]]

BTCV: LabelMap = {
    1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gallbladder", 5: "esophagus", 6: "liver",
    7: "stomach", 8: "aorta", 9: "inferior vena cava", 10: "portal vein and splenic vein",
    11: "pancreas", 12: "right adrenal gland", 13: "left adrenal gland",
}
AMOS22: LabelMap = {
    1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gall bladder", 5: "esophagus", 6: "liver",
    7: "stomach", 8: "aorta", 9: "postcava", 10: "pancreas", 11: "right adrenal gland",
    12: "left adrenal gland", 13: "duodenum", 14: "bladder", 15: "prostate/uterus",
}
WORD: LabelMap = {
    1: "liver", 2: "spleen", 3: "left kidney", 4: "right kidney", 5: "stomach", 6: "gallbladder",
    7: "esophagus", 8: "pancreas", 9: "duodenum", 10: "colon", 11: "intestine", 12: "adrenal",
    13: "rectum", 14: "bladder", 15: "head_of_femur_left", 16: "head_of_femur_right",
}
MSD_TASK03: LabelMap = {1: "liver", 2: "liver tumour"}
MSD_TASK06: LabelMap = {1: "lung tumour"}
MSD_TASK07: LabelMap = {1: "pancreas", 2: "pancreas tumour"}
MSD_TASK08: LabelMap = {1: "hepatic vessel", 2: "hepatic vessel tumour"}
MSD_TASK09: LabelMap = {1: "spleen"}
MSD_TASK10: LabelMap = {1: "colon cancer"}
LITS: LabelMap = {1: "liver", 2: "liver tumour"}
KITS19: LabelMap = {1: "kidney", 2: "kidney tumor"}
KITS21: LabelMap = {1: "kidney", 2: "kidney tumor", 3: "kidney cyst"}
KITS23: LabelMap = dict(KITS21)
ABDOMENCT1K: LabelMap = {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}
FLARE22: LabelMap = {
    1: "liver", 2: "right kidney", 3: "spleen", 4: "pancreas", 5: "aorta", 6: "inferior vena cava",
    7: "right adrenal gland", 8: "left adrenal gland", 9: "gallbladder", 10: "esophagus",
    11: "stomach", 12: "duodenum", 13: "left kidney",
}
FLARE23: LabelMap = {**FLARE22, 14: "tumor"}
CTORG: LabelMap = {1: "liver", 2: "bladder", 3: "lungs", 4: "kidneys", 5: "bone", 6: "brain"}
PANCREAS_CT: LabelMap = {1: "pancreas"}
CHAOS_CT: LabelMap = {1: "liver"}  # PNG value 255
RSNA2023: LabelMap = {1: "liver", 2: "spleen", 3: "left kidney", 4: "right kidney", 5: "bowel"}
#: AbdomenAtlas 1.1 `combined_labels.nii.gz`: the atlas ids themselves.
ABDOMENATLAS11: LabelMap = {i + 1: n for i, n in enumerate(ATLAS_CLASSES)}
TOTALSEG_V1_MAP: LabelMap = {i + 1: n for i, n in enumerate(TOTALSEG_V1)}
TOTALSEG_V2_MAP: LabelMap = {i + 1: n for i, n in enumerate(TOTALSEG_V2)}
#: DAP Atlas (Data/label_name.csv of the DAP Atlas repository); 1 'Left to annotate' is no class.
DAP_ATLAS: LabelMap = {
    1: None, 2: "muscles", 3: "fat", 4: "abdominal tissue", 5: "mediastinal tissue", 6: "esophagus",
    7: "stomach", 8: "small bowel", 9: "duodenum", 10: "colon", 11: "rectum", 12: "gallbladder",
    13: "liver", 14: "pancreas", 15: "kidney left", 16: "kidney right", 17: "bladder", 18: "gonads",
    19: "prostate", 20: "uterocervix", 21: "uterus", 22: "breast left", 23: "breast right",
    24: "spinal canal", 25: "brain", 26: "spleen", 27: "adrenal gland left",
    28: "adrenal gland right", 29: "thyroid left", 30: "thyroid right", 31: "thymus",
    32: "gluteus maximus left", 33: "gluteus maximus right", 34: "gluteus medius left",
    35: "gluteus medius right", 36: "gluteus minimus left", 37: "gluteus minimus right",
    38: "iliopsoas left", 39: "iliopsoas right", 40: "autochthon left", 41: "autochthon right",
    42: "skin",
    **{43 + i: f"vertebrae {v}" for i, v in enumerate(
        ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8",
         "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"])},
    **{67 + 2 * i + s: f"costa {i + 1} {side}" for i in range(12) for s, side in enumerate(("left", "right"))},
    91: "rib_cartilage", 92: "sternum", 93: "clavicle left", 94: "clavicle right", 95: "scapula left",
    96: "scapula right", 97: "humerus left", 98: "humerus right", 99: "skull", 100: "hip left",
    101: "hip right", 102: "sacrum", 103: "femur left", 104: "femur right", 105: "heart",
    106: "heart atrium left", 107: "heart tissue", 108: "heart atrium right", 109: "heart myocardium",
    110: "heart ventricle left", 111: "heart ventricle right", 112: "iliac artery left",
    113: "iliac artery right", 114: "aorta", 115: "iliac vena left", 116: "iliac vena right",
    117: "inferior vena cava", 118: "portal vein and splenic vein", 119: "celiac trunk",
    120: "lung lower lobe left", 121: "lung upper lobe left", 122: "lung lower lobe right",
    123: "lung middle lobe right", 124: "lung upper lobe right", 125: "bronchie", 126: "trachea",
    127: "pulmonary artery", 128: "cheek left", 129: "cheek right", 130: "eyeball left",
    131: "eyeball right",
}

#: Source names whose unified name is the TotalSegmentator spelling of the same structure.
_RENAMES: Dict[str, str] = {
    **{f"costa_{i}_{side}": f"rib_{side}_{i}" for i in range(1, 13) for side in ("left", "right")},
    "clavicle_left": "clavicula_left", "clavicle_right": "clavicula_right",
    "rib_cartilage": "costal_cartilages",
}


def unified_name(source_name: Optional[str]) -> Optional[str]:
    """Unified class of a source label name (None stays None: not a class)."""
    if source_name is None:
        return None
    n = normalize(source_name)
    return totalseg_to_unified(_RENAMES.get(n, n))


def sides_of(unified: str) -> Optional[Tuple[str, str]]:
    """(left, right) unified classes when `unified` labels both sides in one id, else None."""
    left, right = f"{unified}_left", f"{unified}_right"
    return (left, right) if left in BY_NAME and right in BY_NAME else None


#: Every source label map by source key (the converter registry uses the same keys).
SOURCE_LABELS: Dict[str, LabelMap] = {
    "btcv": BTCV, "amos22": AMOS22, "word": WORD,
    "msd_task03": MSD_TASK03, "msd_task06": MSD_TASK06, "msd_task07": MSD_TASK07,
    "msd_task08": MSD_TASK08, "msd_task09": MSD_TASK09, "msd_task10": MSD_TASK10,
    "lits": LITS, "kits19": KITS19, "kits21": KITS21, "kits23": KITS23,
    "abdomenct1k": ABDOMENCT1K, "flare22": FLARE22, "flare23": FLARE23, "ctorg": CTORG,
    "pancreas_ct": PANCREAS_CT, "chaos_ct": CHAOS_CT, "rsna2023": RSNA2023,
    "abdomenatlas11": ABDOMENATLAS11, "totalseg_v1": TOTALSEG_V1_MAP, "totalseg_v2": TOTALSEG_V2_MAP,
    "dap_atlas": DAP_ATLAS,
}
