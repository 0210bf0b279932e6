"""The importance score: one documented combination of the scorers' components.

Per (case, class):

    importance = mean of the available components among
                 uncertainty, absence, inconsistency, max(implausibility, volume)

("available": not NaN; inconsistency is NaN with one pass, volume with fewer than 3 cases). Every
component lies in [0, 1], so the importance does too. Absence is a component of its own, not a
term of the max beside volume, so that a missed organ (uncertainty 1, absence 1, volume 1) stays
above a faint one (uncertainty 1, absence < 1, volume 1) whether or not the volume is defined;
for a class that is predicted at all (absence 0) it scales every importance of a run alike and
leaves their order as it is. Expected error order of the four ways an organ comes out, which the
tests check: missed > faint (p̄ rises but stays below ½: empty label) > hesitant (labelled, p̄
just above ½) > good.

Per case: the mean of its classes' importance (it follows 1 − mean DSC, the error it is meant to
predict); `importance_max`, the largest class importance, is stored too.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping

#: component -> the stored keys it is made of (max over them)
COMPONENTS: Dict[str, tuple] = {
    "uncertainty": ("uncertainty",),
    "absence": ("absence",),
    "inconsistency": ("inconsistency",),
    "implausibility": ("implausibility", "volume"),
}


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def class_importance(values: Mapping[str, float]) -> float:
    """The importance of one (case, class) from its stored scorer values (see the module docstring)."""
    parts = []
    for keys in COMPONENTS.values():
        vals = [float(values[k]) for k in keys if _finite(values.get(k))]
        if vals:
            parts.append(max(vals))
    return sum(parts) / len(parts) if parts else float("nan")


def case_importance(per_class: Mapping[str, Mapping[str, float]]) -> Dict[str, float]:
    """{'importance': mean over classes, 'importance_max': max over classes} of the class importances."""
    vals = [class_importance(v) for v in per_class.values()]
    vals = [v for v in vals if _finite(v)]
    if not vals:
        return {"importance": float("nan"), "importance_max": float("nan")}
    return {"importance": sum(vals) / len(vals), "importance_max": max(vals)}
