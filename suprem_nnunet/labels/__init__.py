"""Unified label space (AbdomenAtlas 1.1 + named extras). Pure data: importing it is cheap."""
from .table import (ATLAS_CLASSES, ATLAS_IDS, BY_NAME, CLASSES, PARTS, SYNONYMS, TUMOR_HOSTS, LabelClass,
                    atlas_id, canonical, canonical_labels, host_of, is_known, normalize, parts_of)
from .totalseg import (TOTALSEG_GROUPS, TOTALSEG_V1, TOTALSEG_V2, totalseg_classes, totalseg_group,
                       totalseg_to_unified, totalseg_v2_id_to_unified)

__all__ = ["ATLAS_CLASSES", "ATLAS_IDS", "BY_NAME", "CLASSES", "PARTS", "SYNONYMS", "TUMOR_HOSTS", "LabelClass",
           "atlas_id", "canonical", "canonical_labels", "host_of", "is_known", "normalize", "parts_of",
           "TOTALSEG_V2", "totalseg_to_unified", "totalseg_v2_id_to_unified", "TOTALSEG_V1",
           "TOTALSEG_GROUPS", "totalseg_classes", "totalseg_group"]
