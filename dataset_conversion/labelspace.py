"""From a source label map to unified label arrays: id look-up, left/right split, tumour hosts."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from suprem_nnunet.labels import CLASSES, atlas_id, host_of
from suprem_nnunet.labels.sources import LabelMap, sides_of, unified_name

from .sides import Geometry, midline_x, split_left_right
from suprem_nnunet.errors import InputError

_TABLE_INDEX = {c.name: i for i, c in enumerate(CLASSES)}


def unified_order(names: Iterable[str]) -> List[str]:
    """Sort unified names: the 32 atlas classes in atlas order, other table rows in table order,
    then novel names alphabetically. Duplicates are dropped."""
    def key(n: str):
        a = atlas_id(n)
        if a is not None:
            return (0, a, n)
        return (1, _TABLE_INDEX[n], n) if n in _TABLE_INDEX else (2, 0, n)
    return sorted(set(names), key=key)


def tumor_hosts(classes: Sequence[str]) -> Dict[str, str]:
    """{tumour class: host organ} for the tumours among `classes` (from the unified table)."""
    return {c: host_of(c) for c in classes if host_of(c)}


def tumor_host_classes(classes: Sequence[str]) -> Dict[str, List[str]]:
    """{tumour: the classes of this label list that make up its host} ('kidney' -> both sides)."""
    out = {}
    for t, host in tumor_hosts(classes).items():
        sides = sides_of(host) or ()
        out[t] = [c for c in classes if c == host or c in sides]
    return out


class LabelMapper:
    """Maps source label arrays to unified label arrays for one source label map."""

    def __init__(self, source_map: LabelMap) -> None:
        self.source_map = dict(source_map)
        self.unified: Dict[int, Optional[str]] = {int(k): unified_name(v) for k, v in self.source_map.items()}
        names: List[str] = []
        for u in self.unified.values():
            if u is not None:
                names.extend(sides_of(u) or (u,))
        self.classes: List[str] = unified_order(names)
        self.ids: Dict[str, int] = {n: i + 1 for i, n in enumerate(self.classes)}
        self.sided = {sid: sides_of(u) for sid, u in self.unified.items() if u and sides_of(u)}

    @property
    def dtype(self):
        return np.uint8 if len(self.classes) < 256 else np.uint16

    def classes_of(self, source_ids: Iterable[int]) -> List[str]:
        """Unified classes labelled by the given source ids (a both-sides id gives both sides)."""
        out = []
        for sid in source_ids:
            u = self.unified.get(int(sid))
            if u is not None:
                out.extend(sides_of(u) or (u,))
        return unified_order(out)

    def apply(self, src: np.ndarray, geo: Geometry, image: Optional[np.ndarray] = None) -> np.ndarray:
        """Unified label array of a source label array (values already checked to be defined)."""
        top = max(self.unified) if self.unified else 0
        lut = np.zeros(max(int(src.max(initial=0)), top) + 1, self.dtype)
        for sid, u in self.unified.items():
            if u is not None and sid not in self.sided:
                lut[sid] = self.ids[u]
        out = lut[src]
        if not self.sided:
            return out
        pairs = [(out == self.ids[a], out == self.ids[b]) for a, b in self._sided_pairs()]
        mid = midline_x(geo, image=image, label=src, sided=[p for p in pairs if p[0].any() and p[1].any()])
        for sid, (left_name, right_name) in self.sided.items():
            organ = src == sid
            if not organ.any():
                continue
            whole = organ.copy()  # the organ with its tumours decides the side of a component
            for tid, tu in self.unified.items():
                if tu and host_of(tu) == self.unified[sid]:
                    whole |= src == tid
            left, right = split_left_right(whole, geo, mid)
            out[organ & left] = self.ids[left_name]
            out[organ & right] = self.ids[right_name]
        return out

    def _sided_pairs(self):
        """(left, right) class pairs labelled by their own source ids (e.g. WORD's kidneys)."""
        for name in self.classes:
            if name.endswith("_left") and name[:-5] + "_right" in self.ids:
                sided_here = any(name in s for s in self.sided.values())
                if not sided_here:
                    yield name, name[:-5] + "_right"


def remap_lut(from_classes: Sequence[str], to_classes: Sequence[str]) -> np.ndarray:
    """Look-up table taking label ids of `from_classes` to ids of `to_classes` (names must exist)."""
    to = {n: i + 1 for i, n in enumerate(to_classes)}
    missing = [n for n in from_classes if n not in to]
    if missing:
        raise InputError(f"classes {missing} are not in the target label list")
    lut = np.zeros(len(from_classes) + 1, np.uint16 if len(to_classes) >= 256 else np.uint8)
    for i, n in enumerate(from_classes):
        lut[i + 1] = to[n]
    return lut

