"""Split tumours hosted by a union organ between its parts by where each tumour lies.

A tumour class can be hosted by a union organ (`kidney_cyst` by `kidney` = `kidney_left` +
`kidney_right`; `lung_tumor` by `lung`). When a label map is scored per side, each connected
component of such a tumour goes to the part it touches most:

- components: 26-connected components of the voxels carrying any of the tumour ids;
- contact with a part: the number of component voxels inside the part's mask dilated by one voxel
  (3x3x3 structuring element), i.e. component voxels with a part voxel among their 26 neighbours;
- the part with the largest contact wins. Ties (equal contact, including a component touching no
  part) go to the part whose voxel centroid is nearest (in mm) to the component's centroid; a part
  absent from the label map is never nearest. If that ties too (or no part is present), the first
  of `part_ids` wins (the label table's order: left before right).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from ..errors import InputError

_FULL = ndimage.generate_binary_structure(3, 3)


def _centroids(labels: np.ndarray, part_ids: Sequence[int],
               spacing: Sequence[float]) -> Dict[int, Optional[np.ndarray]]:
    out: Dict[int, Optional[np.ndarray]] = {}
    for pid in part_ids:
        idx = np.argwhere(labels == pid)
        out[pid] = idx.mean(0) * np.asarray(spacing, float) if idx.size else None
    return out


def split_by_part(labels: np.ndarray, tumour_ids: Sequence[int], part_ids: Sequence[int],
                  spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> Dict[int, np.ndarray]:
    """{part id: boolean mask of the tumour components assigned to that part} for one label map
    (array in (z, y, x) order, `spacing` in the same order); see the module doc for the rule."""
    part_ids = tuple(int(p) for p in part_ids)
    if not part_ids:
        raise InputError("split_by_part needs at least one part id")
    out = {pid: np.zeros(labels.shape, bool) for pid in part_ids}
    comps, n = ndimage.label(np.isin(labels, tuple(tumour_ids)), structure=_FULL)
    if n == 0:
        return out
    centroids: Optional[Dict[int, Optional[np.ndarray]]] = None
    for i, sl in enumerate(ndimage.find_objects(comps), start=1):
        if sl is None:
            continue
        grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, dim)) for s, dim in zip(sl, labels.shape))
        comp = comps[grown] == i
        sub = labels[grown]
        contact = np.array([np.count_nonzero(comp & ndimage.binary_dilation(sub == pid, _FULL)) for pid in part_ids])
        best = np.flatnonzero(contact == contact.max())
        if best.size > 1:
            if centroids is None:
                centroids = _centroids(labels, part_ids, spacing)
            c = (np.argwhere(comp) + [s.start for s in grown]).mean(0) * np.asarray(spacing, float)
            cent = [centroids[part_ids[b]] for b in best]
            dist = np.array([np.inf if m is None else float(np.linalg.norm(c - m)) for m in cent])
            best = best[np.flatnonzero(dist == dist.min())]
        out[part_ids[int(best[0])]][grown] |= comp
    return out


class SplitCache:
    """`split_by_part` results of one label map, computed once per (tumour ids, part ids)."""

    def __init__(self, labels: np.ndarray, spacing: Sequence[float]):
        self.labels, self.spacing = labels, tuple(spacing)
        self._done: Dict[Tuple[Tuple[int, ...], Tuple[int, ...]], Dict[int, np.ndarray]] = {}

    def part_mask(self, tumour_ids: Sequence[int], part_ids: Sequence[int], part_id: int) -> np.ndarray:
        key = (tuple(tumour_ids), tuple(part_ids))
        if key not in self._done:
            self._done[key] = split_by_part(self.labels, key[0], key[1], self.spacing)
        return self._done[key][int(part_id)]
