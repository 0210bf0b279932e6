"""The dataset fingerprint from a bounded sample: cost and memory that do not grow with the dataset.

nnU-Net's `DatasetFingerprintExtractor` reads every training case in full and keeps 10^8 sampled
foreground voxels in the parent process (float32: 0.4 GB per channel, about three times that while it
concatenates and takes percentiles), whatever the dataset's size. At AbdomenAtlas scale (9,262 CTs,
about 1 TB) that is a terabyte read for a median spacing, a median shape and intensity percentiles.

`SupremFingerprintExtractor` changes two settings and nothing else:

* it fingerprints at most `max_cases` training cases, drawn at random with a fixed seed (all of them
  in a smaller dataset); the median spacing and shape and the intensity percentiles of a few hundred
  random cases are those of the dataset to within sampling noise. The planner takes the dataset's
  size from dataset.json `numTraining`, not from the fingerprint, so batch-size caps are unchanged;
* it keeps at most `max_foreground_voxels` foreground voxels in all (nnU-Net: 10^8), spread evenly
  over the sampled cases as nnU-Net does.

The log names how many cases were drawn.
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, TypeVar, Union

import numpy as np
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
from ..errors import InputError

log = logging.getLogger(__name__)

T = TypeVar("T")


def sample_cases(cases: Mapping[str, T], max_cases: int, seed: int = 1234) -> Dict[str, T]:
    """At most `max_cases` entries of `cases`, drawn without replacement with `seed`, in their
    sorted-id order (the same draw whatever the listing order); all of them if there are no more."""
    if max_cases < 1:
        raise InputError(f"max_cases must be >= 1, got {max_cases}")
    keys = sorted(cases)
    if len(keys) > max_cases:
        pick = np.sort(np.random.RandomState(seed).choice(len(keys), max_cases, replace=False))
        keys = [keys[i] for i in pick]
    return {k: cases[k] for k in keys}


def foreground_voxels_per_case(total: int, num_cases: int) -> int:
    """Foreground voxels nnU-Net samples from each case for a budget of `total` (its own formula)."""
    return int(total // num_cases)


class SupremFingerprintExtractor(DatasetFingerprintExtractor):
    """nnU-Net's fingerprint of at most `max_cases` random cases and `max_foreground_voxels` voxels."""

    max_cases: int = 300
    max_foreground_voxels: int = 10_000_000
    seed: int = 1234

    def __init__(self, dataset_name_or_id: Union[str, int], num_processes: int = 8, verbose: bool = False):
        super().__init__(dataset_name_or_id, num_processes, verbose)
        self.num_cases_total = len(self.dataset)
        self.dataset = sample_cases(self.dataset, self.max_cases, self.seed)
        self.num_foreground_voxels_for_intensitystats = min(self.num_foreground_voxels_for_intensitystats,
                                                            self.max_foreground_voxels)
        if len(self.dataset) < self.num_cases_total:
            log.info("fingerprint of %s: %d of %d training cases, drawn at random (seed %d)", self.dataset_name,
                     len(self.dataset), self.num_cases_total, self.seed)
