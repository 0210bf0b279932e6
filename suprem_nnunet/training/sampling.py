"""Which cases the training batches draw (`suprem_train --sample-by case|source|class`).

nnU-Net draws every training case with the same probability (`case`, the default). A merged
pre-training set is dominated by its big sources, so the classes only a small source annotates are
rarely seen. Two weighted draws fix that:

* `source`: every source is drawn equally often, then a case of it uniformly:
  P(case) = 1 / (number of sources x cases of its source). The source of a case is dataset.json's
  `case_sources[case]["source"]` (written by the converters and by `suprem_convert merge`); a case
  it does not list takes its case-id prefix (`btcv_0001` -> `btcv`).
* `class`: a foreground class is drawn uniformly, then one of the cases that annotate it:
  P(case) = sum over the classes it annotates of 1 / (number of classes x cases annotating that
  class). Every class's annotated cases are thus drawn at least 1/classes of the time (exactly, when
  no case annotates two classes); a case that annotates nothing is never drawn.

The weights go into nnU-Net's own data loader: `nnUNetDataLoader` (batchgenerators' `DataLoader`)
draws `np.random.choice(indices, p=sampling_probabilities)`; nnU-Net's `get_dataloaders` passes
None, and `set_sampling` fills it in on the loader it built (restarting its worker processes, if
any, so that they copy the weights). Pure numpy apart from that; no torch.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np
from ..errors import InputError

SAMPLE_BY = ("case", "source", "class")


def check_sample_by(value: str) -> str:
    """`value` if it is a known sampling mode; ValueError naming the choices otherwise."""
    if value not in SAMPLE_BY:
        raise InputError(f"unknown --sample-by {value!r}; choose one of {', '.join(SAMPLE_BY)}")
    return value


def case_prefix(case: str) -> str:
    """The source tag in a case id: everything before the last '_' (`btcv_0001` -> `btcv`)."""
    return case.rsplit("_", 1)[0] if "_" in case else case


def case_sources(dataset_json: Mapping, cases: Iterable[str]) -> Dict[str, str]:
    """Source of each case: dataset.json `case_sources[case]["source"]`, else its id prefix."""
    listed = dataset_json.get("case_sources") or {}
    out = {}
    for case in map(str, cases):
        info = listed.get(case)
        src = info.get("source") if isinstance(info, Mapping) else info
        out[case] = str(src) if src else case_prefix(case)
    return out


def case_probabilities(cases: Sequence[str], mode: str, sources: Optional[Mapping[str, str]] = None,
                       annotated: Optional[Mapping[str, Iterable]] = None) -> np.ndarray:
    """Probability of drawing each of `cases` (in that order, summing to 1) under `mode`.

    `sources`: case -> source (for 'source'); `annotated`: case -> the foreground classes it
    annotates, names or channel ids (for 'class'; None or empty: every case annotates everything)."""
    check_sample_by(mode)
    cases = [str(c) for c in cases]
    if not cases:
        raise InputError("no training cases to sample from")
    n = len(cases)
    if mode == "case" or (mode == "class" and not annotated):
        return np.full(n, 1.0 / n)
    if mode == "source":
        if sources is None:
            raise InputError("--sample-by source needs the source of every case")
        src = [sources[c] for c in cases]
        size = defaultdict(int)
        for s in src:
            size[s] += 1
        return np.array([1.0 / (len(size) * size[s]) for s in src])
    missing = [c for c in cases if c not in annotated]
    if missing:
        raise InputError(f"--sample-by class: no annotated classes for case {missing[0]}")
    holders: Dict = defaultdict(list)
    for i, c in enumerate(cases):
        for k in set(annotated[c]):
            holders[k].append(i)
    if not holders:
        raise InputError("--sample-by class: no training case annotates any class")
    p = np.zeros(n)
    for idx in holders.values():
        p[idx] += 1.0 / (len(holders) * len(idx))
    return p / p.sum()


def draw_shares(cases: Sequence[str], probabilities: Sequence[float],
                groups: Mapping[str, Iterable]) -> Dict[str, float]:
    """Expected share of draws per group: {group: sum of P(case) over the cases in it}; a case may
    be in several groups (classes). `groups`: case -> its group keys."""
    out: Dict[str, float] = defaultdict(float)
    for c, p in zip(map(str, cases), probabilities):
        for g in set(groups.get(c, ())):
            out[str(g)] += float(p)
    return dict(sorted(out.items()))


def _loader(augmenter):
    """The batchgenerators DataLoader inside nnU-Net's Single/NonDetMultiThreadedAugmenter."""
    for attr in ("data_loader", "generator"):
        dl = getattr(augmenter, attr, None)
        if dl is not None and hasattr(dl, "sampling_probabilities"):
            return dl
    if hasattr(augmenter, "sampling_probabilities"):
        return augmenter
    raise TypeError(f"{type(augmenter).__name__}: no data loader with sampling_probabilities inside")


def set_sampling(augmenter, probability_of: Mapping[str, float]) -> np.ndarray:
    """Make the training loader of `augmenter` draw cases with `probability_of[case]`; returns the
    probabilities in the loader's case order. Worker processes already started are restarted."""
    dl = _loader(augmenter)
    p = np.array([probability_of[str(k)] for k in dl.indices], dtype=float)
    p /= p.sum()
    dl.sampling_probabilities = p
    if getattr(augmenter, "initialized", False) and hasattr(augmenter, "restart"):
        augmenter.restart()  # workers hold a copy of the loader made when they started
    return p
