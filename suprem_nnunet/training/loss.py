"""Dice + cross-entropy that a per-case set of annotated classes can mask (partial labels).

The cross-entropy is the marginal loss over an allowed set of classes per voxel (Shi et al.,
MedIA 2021): loss(v) = -log sum_{k in S(v)} p_k(v), averaged over voxels, where
  * a voxel labelled c > 0 has S = {c}: drawn positives are trusted, even for a class the case's
    list does not call annotated (FLARE23's partial lesions: drawn where found, not everywhere);
  * a background voxel has S = {background} + the classes the case does not annotate: nobody
    drew them, so predicting one there costs nothing and an unmarked organ or lesion is not
    taught as background;
  * a voxel labelled with an organ h also allows the tumours hosted by h that the case does not
    annotate (`hosted` pairs): a source that draws the liver but not its lesions (BTCV) labels a
    lesion's voxels as liver, so they must not teach "not liver_tumor".
It is computed with log_softmax + logsumexp, so no target ever sits on a masked logit and the
loss stays finite. Dice is computed only over the foreground classes the case annotates. With
every class annotated the loss equals nnU-Net's Dice + CE (DC_and_CE_loss, do_bg=False).

Under DDP (`ddp=True`) every term is a ratio of sums over the *global* batch: each rank sums its
cross-entropy, voxel count and masked Dice statistics (tp, predicted and true volume per class and
the annotated mask, or per case the Dice sum and count), the sums are gathered with gradients
(nnU-Net's AllGatherGrad, as its MemoryEfficientSoftDiceLoss(ddp=True)), and every rank gets the
loss of the whole batch. DDP averages the ranks' gradients, so a step equals the single-process
step on the concatenated batch, also when the ranks hold different numbers of cases.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from .ddp import gathered_sum
from ..errors import InputError


class PartialLabelDiceCELoss(nn.Module):
    """`loss(logits (B,C,...), target (B,1,...) int)`; `set_annotated((B,C) bool)` before each call."""

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, weight_ce: float = 1.0,
                 weight_dice: float = 1.0, hosted: Sequence[Tuple[int, int]] = (), ddp: bool = False) -> None:
        super().__init__()
        self.hosted = tuple((int(h), int(t)) for h, t in hosted)  # (host organ channel, tumour channel)
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.weight_ce = weight_ce
        self.weight_dice = weight_dice
        self.ddp = ddp  # sum the statistics over all ranks (every rank must call the loss alike)
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
        ce_sum = self._marginal_ce_sum(logits, target, ann, self.hosted)
        n_voxels = torch.tensor([float(target.numel())], device=logits.device)
        dice_stats = self._dice_stats(torch.softmax(logits, 1), target, ann)
        stats = torch.cat([ce_sum.reshape(1), n_voxels, dice_stats])
        if self.ddp:
            stats = gathered_sum(stats)
        ce = stats[0] / stats[1]
        dice = self._dice_from_stats(stats[2:], c - 1)
        return self.weight_ce * ce - self.weight_dice * dice

    @staticmethod
    def _marginal_ce_sum(logits: torch.Tensor, target: torch.Tensor, ann: torch.Tensor,
                         hosted: Sequence[Tuple[int, int]] = ()) -> torch.Tensor:
        """Sum over voxels of -log sum_{k in S(v)} p_k (see the module docstring for S)."""
        if bool(ann.all()):
            return nn.functional.cross_entropy(logits, target, reduction="sum")
        logp = torch.log_softmax(logits, 1)
        allowed = torch.zeros_like(logp, dtype=torch.bool).scatter_(1, target[:, None], True)
        unannotated = ~ann.view(ann.shape + (1,) * (logits.ndim - 2))
        allowed |= (target == 0)[:, None] & unannotated
        for host, tumour in hosted:  # an organ's voxels may hold its undrawn lesions
            allowed[:, tumour] |= (target == host) & unannotated[:, tumour]
        return -torch.logsumexp(logp.masked_fill(~allowed, float("-inf")), 1).sum()

    def _mask(self, b: int, c: int, device) -> torch.Tensor:
        if self.annotated is None:
            return torch.ones((b, c), dtype=torch.bool, device=device)
        ann = self.annotated.to(device=device, dtype=torch.bool)
        if ann.shape != (b, c):
            raise InputError(f"annotated mask has shape {tuple(ann.shape)}, expected {(b, c)}")
        ann = ann.clone()
        ann[:, 0] = True
        return ann

    def _dice_stats(self, probs: torch.Tensor, target: torch.Tensor, ann: torch.Tensor) -> torch.Tensor:
        """This batch's share of the soft Dice over annotated foreground classes (background
        excluded, as nnU-Net), as sums that add up over ranks: batch Dice: masked intersection,
        predicted and true volume and the number of cases annotating each class (4 x (C-1));
        per-case Dice: the sum of the annotated (case, class) Dice values and their number (2)."""
        axes = tuple(range(2, probs.ndim))
        onehot = torch.zeros_like(probs).scatter_(1, target[:, None], 1.0)
        p, g = probs[:, 1:], onehot[:, 1:]
        m = ann[:, 1:].float()
        inter, psum, gsum = (p * g).sum(axes), p.sum(axes), g.sum(axes)
        if self.batch_dice:
            return torch.cat([(x * m).sum(0) for x in (inter, psum, gsum, torch.ones_like(m))])
        dc = (2 * inter + self.smooth) / torch.clamp(psum + gsum + self.smooth, min=1e-8)
        return torch.stack([(dc * m).sum(), m.sum()])

    def _dice_from_stats(self, stats: torch.Tensor, n_fg: int) -> torch.Tensor:
        """Mean soft Dice from (gathered) `_dice_stats`; 0 (with a zero gradient) when no case
        annotates any foreground class."""
        if self.batch_dice:
            inter, psum, gsum, count = stats.view(4, n_fg)
            valid = count > 0
            if not bool(valid.any()):
                return stats.sum() * 0.0
            dc = (2 * inter + self.smooth) / torch.clamp(psum + gsum + self.smooth, min=1e-8)
            return dc[valid].mean()
        total, count = stats[0], stats[1]
        if not bool(count > 0):
            return stats.sum() * 0.0
        return total / count
