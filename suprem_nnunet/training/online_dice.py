"""nnU-Net's online pseudo-Dice counts, masked per case by the classes each case annotates.

nnU-Net picks `checkpoint_best` by the EMA of a pseudo-Dice built from tp/fp/fn summed over each
validation batch. On a partially labelled case a correct prediction of a class the case does not
annotate lands on 'background' in its label map and would count as a false positive; here the
counts are taken per case and the (case, class) entries the case does not annotate are dropped
before summing over the batch.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn


def masked_tp_fp_fn(logits: torch.Tensor, target: torch.Tensor,
                    annotated: Optional[torch.Tensor]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, fp, fn per foreground class (background dropped, as nnU-Net) of the argmax of `logits`
    (B, C, ...) against the label map `target` (B, 1, ...), counting case b and class c only where
    `annotated[b, c]` (a (B, C) bool; None: every class of every case)."""
    with torch.no_grad():
        seg = logits.argmax(1, keepdim=True)
        onehot = torch.zeros(logits.shape, device=logits.device, dtype=torch.float32).scatter_(1, seg, 1)
        tp, fp, fn, _ = get_tp_fp_fn_tn(onehot, target, axes=tuple(range(2, logits.ndim)))  # each (B, C)
        if annotated is not None:
            keep = annotated.to(device=tp.device, dtype=tp.dtype)
            tp, fp, fn = tp * keep, fp * keep, fn * keep
        return tuple(x.sum(0)[1:].cpu().numpy() for x in (tp, fp, fn))
