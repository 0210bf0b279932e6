"""Find near-duplicate scans among many cases from their thumbnail fingerprints (no id tables).

Cases are bucketed twice: by voxel counts (a header spacing correction keeps them) and by field of
view in mm (a resampled copy keeps it), each on a log scale with `TOLERANCE` steps; a case is
compared only with cases in its own and the neighbouring buckets, so the work grows with the
number of cases times the bucket occupancy, not with the number of pairs. Within bucket pairs a
block of coarse correlations (8 flips) pre-filters, then the detail correlation decides
(`thumbnail.match`). Matching pairs are joined into groups; the first case of a group (input
order: the caller lists preferred sources first) is the one kept.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from .thumbnail import COARSE, FLIPS, Fingerprint, Flip, detail_score, flipped, match

TOLERANCE = 0.05  # relative bucket step of voxel counts and extents
PREFILTER = 0.90  # coarse correlation a pair needs before the detail check
MATCH = 0.99  # detail correlation that makes two scans the same scan
FLIP_MARGIN = 0.02  # flips within this of the best coarse correlation get a detail check


@dataclass
class Group:
    """Cases that hold the same scan: `kept` and the others with (index, correlation, flip that
    lines the other case's LPS voxels up with the kept case)."""

    kept: int
    others: List[Tuple[int, float, Flip]] = field(default_factory=list)


@dataclass
class SearchStats:
    cases: int = 0
    coarse_pairs: int = 0  # pairs compared by coarse correlation
    detail_pairs: int = 0  # pairs that passed the pre-filter
    matches: int = 0


def _log_bin(v: float) -> int:
    return int(np.floor(np.log(max(v, 1e-6)) / np.log1p(TOLERANCE)))


def bucket_keys(fp: Fingerprint) -> List[Tuple]:
    """The cells of a fingerprint: one by voxel counts, one by extent (mm)."""
    return [("voxels",) + tuple(_log_bin(n) for n in fp.shape),
            ("mm",) + tuple(_log_bin(e) for e in fp.extent_mm)]


def _neighbours(key: Tuple) -> List[Tuple]:
    return [(key[0],) + tuple(k + d for k, d in zip(key[1:], ds))
            for ds in itertools.product((-1, 0, 1), repeat=len(key) - 1)]


def find_pairs(fps: Sequence[Fingerprint], stats: SearchStats = None) -> Dict[Tuple[int, int], Tuple[float, Flip]]:
    """{(i, j): (detail correlation, flip of i onto j)} for every matching pair i < j (a flip is its
    own inverse: the same flip takes j onto i)."""
    stats = stats if stats is not None else SearchStats()
    stats.cases = len(fps)
    cells: Dict[Tuple, List[int]] = defaultdict(list)
    for i, fp in enumerate(fps):
        for k in bucket_keys(fp):
            cells[k].append(i)
    coarse_flips = np.stack([flipped(fp.coarse.reshape((COARSE,) * 3)) for fp in fps]) if fps else None
    coarse_plain = np.stack([fp.coarse for fp in fps]) if fps else None
    seen: Set[Tuple[int, int]] = set()
    out: Dict[Tuple[int, int], Tuple[float, Flip]] = {}
    for key, members in cells.items():
        for nkey in _neighbours(key):
            if nkey < key or nkey not in cells:
                continue
            a = np.array(members)
            b = np.array(cells[nkey])
            # (|a|, 8, |b|) coarse correlations of a's flips with b
            corr = np.tensordot(coarse_flips[a], coarse_plain[b], axes=(2, 1)).transpose(0, 2, 1)
            corr /= coarse_plain.shape[1]
            best = corr.max(axis=2)
            for ia, ib in zip(*np.nonzero(best >= PREFILTER)):
                i, j = int(a[ia]), int(b[ib])
                if i == j or (min(i, j), max(i, j)) in seen:
                    continue
                seen.add((min(i, j), max(i, j)))
                # the detail decides, under the flips the coarse step finds (near-)best
                flips = [FLIPS[f] for f in np.flatnonzero(corr[ia, ib] >= best[ia, ib] - FLIP_MARGIN)]
                score, flip = max((detail_score(fps[i], fps[j], fl), fl) for fl in flips)
                if score >= MATCH:
                    out[(min(i, j), max(i, j))] = (score, flip)
            stats.coarse_pairs += len(a) * len(b)
    stats.detail_pairs = len(seen)
    stats.matches = len(out)
    return out


def group_duplicates(fps: Sequence[Fingerprint], stats: SearchStats = None) -> List[Group]:
    """Groups of cases holding the same scan (connected matching pairs); the lowest index is kept."""
    pairs = find_pairs(fps, stats)
    parent = list(range(len(fps)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    members: Dict[int, List[int]] = defaultdict(list)
    for i in range(len(fps)):
        members[root(i)].append(i)
    groups = []
    for r, ms in sorted(members.items()):
        if len(ms) < 2:
            continue
        g = Group(kept=ms[0])
        for m in ms[1:]:
            # a flip is its own inverse, so the flip of the kept case onto m also takes m onto it;
            # a member joined through another member is matched with the kept case directly
            score, flip = pairs.get((ms[0], m)) or match(fps[m], fps[ms[0]])
            g.others.append((m, score, flip))
        groups.append(g)
    return groups
