"""Dice + cross-entropy that a per-case set of annotated classes can mask (partial labels).

For a case that annotates only some classes, the softmax probabilities of the classes it does not
annotate are merged into background before the cross-entropy (the marginal loss of Shi et al.,
MedIA 2021): an unannotated organ may be predicted there without penalty, since the label map
calls it background only because nobody drew it. Dice is computed only over the annotated
foreground classes. With every class annotated the loss equals nnU-Net's Dice + CE.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class PartialLabelDiceCELoss(nn.Module):
    """`loss(logits (B,C,...), target (B,1,...) int)`; `set_annotated((B,C) bool)` before each call."""

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, weight_ce: float = 1.0,
                 weight_dice: float = 1.0) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.weight_ce = weight_ce
        self.weight_dice = weight_dice
        self.annotated: Optional[torch.Tensor] = None

    def set_annotated(self, annotated: Optional[torch.Tensor]) -> None:
        """(B, C) bool: class c annotated in case b (column 0, background, is always treated as True)."""
        self.annotated = annotated

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, c = logits.shape[:2]
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.long()
        ann = self._mask(b, c, logits.device)
        logits = logits.float()
        if bool(ann.all()):
            merged = logits
        else:  # background absorbs the classes a case does not annotate
            unann = ~ann
            unann[:, 0] = True  # the merged background = background + unannotated classes
            shape = (b, c) + (1,) * (logits.ndim - 2)
            neg_inf = torch.finfo(logits.dtype).min
            bg = torch.logsumexp(logits.masked_fill(~unann.view(shape), neg_inf), dim=1, keepdim=True)
            merged = logits.masked_fill(~ann.view(shape), neg_inf)
            merged = torch.cat([bg, merged[:, 1:]], 1)
        ce = nn.functional.cross_entropy(merged, target)
        probs = torch.softmax(logits, 1)
        dice = self._soft_dice(probs, target, ann)
        return self.weight_ce * ce - self.weight_dice * dice

    def _mask(self, b: int, c: int, device) -> torch.Tensor:
        if self.annotated is None:
            return torch.ones((b, c), dtype=torch.bool, device=device)
        ann = self.annotated.to(device=device, dtype=torch.bool)
        if ann.shape != (b, c):
            raise ValueError(f"annotated mask has shape {tuple(ann.shape)}, expected {(b, c)}")
        ann = ann.clone()
        ann[:, 0] = True
        return ann

    def _soft_dice(self, probs: torch.Tensor, target: torch.Tensor, ann: torch.Tensor) -> torch.Tensor:
        """Mean soft Dice over annotated foreground classes (background excluded, as nnU-Net)."""
        axes = tuple(range(2, probs.ndim))
        onehot = torch.zeros_like(probs).scatter_(1, target[:, None], 1.0)
        p, g = probs[:, 1:], onehot[:, 1:]
        m = ann[:, 1:].float()
        inter, psum, gsum = (p * g).sum(axes), p.sum(axes), g.sum(axes)
        if self.batch_dice:
            inter, psum, gsum = ((x * m).sum(0) for x in (inter, psum, gsum))
            valid = m.sum(0) > 0
        else:
            valid = m > 0
        dc = (2 * inter + self.smooth) / torch.clamp(psum + gsum + self.smooth, min=1e-8)
        if not bool(valid.any()):
            return probs.sum() * 0.0
        return dc[valid].mean()
