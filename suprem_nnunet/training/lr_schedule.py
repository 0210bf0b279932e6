"""Linear warm-up then cosine decay, stepped per epoch like nnU-Net's PolyLRScheduler.

This is SuPreM's AdamW schedule (LinearWarmupCosineAnnealingLR in MrGiovanni/SuPreM's
supervised pre-training), written in the interface nnU-Net's trainer drives
(`step(current_epoch)` at the start of each epoch).
"""
from __future__ import annotations

import math
from typing import Optional

from torch.optim.lr_scheduler import _LRScheduler


def warmup_cosine_lr(initial_lr: float, epoch: int, max_epochs: int, warmup_epochs: int) -> float:
    """The learning rate of `epoch` (0-based): (e + 1) / (W + 1) of `initial_lr` during the W warm-up
    epochs (never zero), then cosine from `initial_lr` at epoch W down towards 0 at `max_epochs`."""
    if epoch < warmup_epochs:
        return initial_lr * (epoch + 1) / (warmup_epochs + 1)
    span = max(1, max_epochs - warmup_epochs)
    return 0.5 * initial_lr * (1 + math.cos(math.pi * min(epoch - warmup_epochs, span) / span))


class WarmupCosineLRScheduler(_LRScheduler):
    def __init__(self, optimizer, initial_lr: float, max_steps: int, warmup_steps: int,
                 current_step: Optional[int] = None) -> None:
        self.initial_lr, self.max_steps, self.warmup_steps = initial_lr, max_steps, warmup_steps
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def step(self, current_step: Optional[int] = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = warmup_cosine_lr(self.initial_lr, current_step, self.max_steps, self.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr for _ in self.optimizer.param_groups]

    def get_last_lr(self):
        return self._last_lr
