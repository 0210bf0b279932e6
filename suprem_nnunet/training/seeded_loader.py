"""Seeds for nnU-Net's augmentation workers.

nnunetv2 2.8.1 builds its multi-process augmenters inside `nnUNetTrainer.get_dataloaders` with
`seeds=None` (each worker seeds itself from the OS) and starts them before returning. While that
method runs, `seeded_augmenters` puts a subclass in its place that passes one seed per worker
(`seeding.worker_seeds`, distinct per DDP rank and between the training and validation loaders).
With `ordered=True` (`--deterministic`) it uses batchgenerators' `MultiThreadedAugmenter`, which
hands batches out round-robin, instead of `NonDetMultiThreadedAugmenter`, which hands them out in
the order the workers finish them: only then is the sequence of batches itself reproducible.

In the main-process loader (`nnUNet_n_proc_DA=0`, the CPU default here) there are no workers; the
global NumPy and torch generators that `seed_everything` seeded draw the patches.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Iterator, Optional

from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as trainer_module

from ..seeding import worker_seeds


@contextlib.contextmanager
def seeded_augmenters(seed: Optional[int], rank: int, ordered: bool = False) -> Iterator[None]:
    """Within the block, augmenters nnU-Net's trainer creates get per-worker seeds derived from
    (`seed`, `rank`, which loader); nothing changes when `seed` is None."""
    if seed is None:
        yield
        return
    stream = itertools.count()

    def make_augmenter(data_loader, transform, num_processes, num_cached=2, seeds=None, pin_memory=False,
                       wait_time=0.02):
        if seeds is None:
            seeds = worker_seeds(seed, rank, num_processes, stream=next(stream))
        if ordered:
            return MultiThreadedAugmenter(data_loader, transform, num_processes, num_cached, seeds, pin_memory,
                                          wait_time=wait_time)
        return NonDetMultiThreadedAugmenter(data_loader, transform, num_processes, num_cached, seeds, pin_memory,
                                            wait_time)

    original = trainer_module.NonDetMultiThreadedAugmenter
    trainer_module.NonDetMultiThreadedAugmenter = make_augmenter
    try:
        yield
    finally:
        trainer_module.NonDetMultiThreadedAugmenter = original
