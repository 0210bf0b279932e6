"""Left/right classes of the label space: which class names carry a side and which pairs mirror into each other.

A class is sided when one `_`-separated token of its unified name is `left` or `right`
(`kidney_left`, `adrenal_gland_right`, `rib_left_3`). Its partner is the same name with that token
swapped; a left/right flip of an image turns the one into the other. Pure names, no numpy.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .table import canonical

SIDES = ("left", "right")


def side_of(name: str) -> Optional[str]:
    """'left' or 'right' for a sided class (exactly one side token in its unified name), else None."""
    tokens = canonical(name).split("_")
    found = [t for t in tokens if t in SIDES]
    return found[0] if len(found) == 1 else None


def partner_name(name: str) -> Optional[str]:
    """The unified name of a sided class's mirror partner (kidney_left -> kidney_right), else None."""
    side = side_of(name)
    if side is None:
        return None
    other = SIDES[1 - SIDES.index(side)]
    return "_".join(other if t == side else t for t in canonical(name).split("_"))


def sided_pairs(names: Sequence[str]) -> Tuple[List[Tuple[int, int]], List[str]]:
    """(pairs, unpaired) of a class list: `pairs` holds (left index, right index) into `names` for
    every sided class whose partner is also in `names` (in the order of the left class), `unpaired`
    the unified names of sided classes whose partner is absent (a flip cannot be undone for them)."""
    index: Dict[str, int] = {canonical(n): i for i, n in enumerate(names)}
    pairs: List[Tuple[int, int]] = []
    unpaired: List[str] = []
    for name, i in index.items():
        other = partner_name(name)
        if other is None:
            continue
        if other not in index:
            unpaired.append(name)
        elif side_of(name) == "left":
            pairs.append((i, index[other]))
    return pairs, unpaired
