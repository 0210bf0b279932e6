"""Left/right classes under mirroring: the training hooks and the mirrored test-time average.

The decision (policy, left-right axis, label pairs) is made when planning and recorded in the plans
(planning/mirroring.py). Here it is applied:

* `SidedMirroringMixin` (a base of SupremTrainer) overrides nnU-Net's
  `configure_rotation_dummyDA_mirroring_and_inital_patch_size` (under `omit` the LR axis leaves the
  training and the inference mirror axes; with sided classes, in-plane rotations beyond +-30 degrees,
  which turn left into right as a flip does, are capped) and `get_training_transforms` (under `swap`
  nnU-Net's MirrorTransform is replaced by `SwapMirrorTransform`, which swaps the pairs' label values
  whenever it flips the LR axis; the deep-supervision targets are downsampled after it, so they
  follow). nnU-Net's own final validation averages flips without swapping, so under `swap` it runs
  without the LR axis.
* `mirrored_average` is nnU-Net's test-time mirroring with the pairs' output channels swapped in
  every prediction whose input was flipped along the LR axis; the predictor and the TTA passes use it.
"""
from __future__ import annotations

import itertools
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform

from ..labels.table import canonical
from ..planning.mirroring import MirroringPlan, decide, is_region_based, mirroring_for_dataset, recorded
from ..dataset.raw import label_names
from .. import paths
from ..errors import InputError

#: largest rotation (radians) left to augmentation when classes are sided: 30 degrees, nnU-Net's 3D range
MAX_SIDED_ROTATION = 30.0 / 360 * 2 * np.pi


def swap_labels(segmentation: torch.Tensor, pairs: Sequence[Tuple[int, int]]) -> torch.Tensor:
    """A copy of a label map with the values of each (left, right) pair exchanged; other values kept."""
    out = segmentation.clone()
    for a, b in pairs:
        out[segmentation == a] = b
        out[segmentation == b] = a
    return out


class SwapMirrorTransform(MirrorTransform):
    """nnU-Net's MirrorTransform (each allowed axis flipped with probability 1/2); when the flip
    includes `lr_axis` the segmentation's left/right label values are swapped as well."""

    def __init__(self, allowed_axes: Tuple[int, ...], lr_axis: int, pairs: Sequence[Tuple[int, int]]):
        super().__init__(allowed_axes)
        self.lr_axis = int(lr_axis)
        self.pairs = [(int(a), int(b)) for a, b in pairs]

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        out = super()._apply_to_segmentation(segmentation, **params)
        return swap_labels(out, self.pairs) if self.lr_axis in params["axes"] else out


def mirrored_average(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, axes: Sequence[int],
                     swap: Optional[Tuple[int, Sequence[int]]] = None) -> torch.Tensor:
    """Mean of `forward` over `x` and its flips along every non-empty combination of the spatial
    `axes` (0-based; `x` is (B, C, *spatial)), each flipped back; with `swap = (lr_axis, perm)` the
    output channels of a prediction whose input was flipped along lr_axis are reordered by perm
    (the left/right partners exchanged) before they are added."""
    prediction = forward(x)
    spatial = [int(a) + 2 for a in axes]
    combos = [c for i in range(len(spatial)) for c in itertools.combinations(spatial, i + 1)]
    perm = None if swap is None else torch.as_tensor(list(swap[1]), device=prediction.device)
    for c in combos:
        pred = torch.flip(forward(torch.flip(x, c)), c)
        if perm is not None and swap[0] + 2 in c:
            pred = pred.index_select(1, perm)
        prediction += pred
    return prediction / (len(combos) + 1)


def prediction_swap(plan: Optional[MirroringPlan], dim: int, num_channels: int,
                    axes: Optional[Sequence[int]]) -> Optional[Tuple[int, List[int]]]:
    """(lr_axis, channel permutation) for test-time mirroring along `axes`, when the plan swaps and
    the LR axis is among them; else None (nothing to swap)."""
    if plan is None:
        return None
    axis = plan.swap_axis(dim)
    if axis is None or axis not in tuple(axes or ()):
        return None
    return axis, plan.channel_permutation(num_channels)


def model_prediction_swap(model, axes: Optional[Sequence[int]]) -> Optional[Tuple[int, List[int]]]:
    """`prediction_swap` for a trained model (checkpoint.TrainedModel) mirrored along `axes`."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager


    plan = model.mirroring
    if plan is None or plan.policy != "swap":
        return None
    dim = len(PlansManager(model.plans).get_configuration(model.configuration).patch_size)
    return prediction_swap(plan, dim, len(label_names(model.dataset_json)) + 1, axes)


class SidedMirroringMixin:
    """Applies the plans' left-right mirroring decision in an nnUNetTrainer (see the module docstring)."""

    _sided_plan: Optional[MirroringPlan] = None

    def sided_mirroring(self) -> MirroringPlan:
        """The decision for this run: the plans' record, re-checked against the annotated classes of
        this run's cases (one case with one side of a pair annotated turns swap into omit); plans
        without a record are decided now from the raw dataset. Written back into the plans, so the
        checkpoint carries what applied."""
        if self._sided_plan is not None:
            return self._sided_plan

        plans = self.plans_manager.plans
        plan = recorded(plans)
        raw = paths.raw_root() / self.plans_manager.dataset_name
        if plan is None and (raw / "dataset.json").is_file():
            plan = mirroring_for_dataset(raw, self.dataset_json, plans)
            self.print_to_log_file("plans without a left/right mirroring record: decided from the raw dataset")
        elif plan is None:  # no images to read the orientation from: every axis may be left-right
            plan = decide([] if is_region_based(self.dataset_json) else label_names(self.dataset_json), None)
            self.print_to_log_file(f"plans without a left/right mirroring record and no raw dataset at {raw}")
        if is_region_based(self.dataset_json):
            self._sided_plan = plan
            return plan
        names = label_names(self.dataset_json)
        if plan.class_names and plan.class_names != [canonical(n) for n in names]:
            raise InputError(f"plans {self.plans_manager.plans_name}: suprem.mirroring was decided for classes "
                             f"{plan.class_names}, but the dataset has {names}; plan the dataset again")
        annotated = {k: [names[c - 1] for c in v] for k, v in getattr(self, "annotated_channels", {}).items()}
        if plan.policy == "swap" and annotated:
            plan = decide(names, plan.lr_axes, plan.requested, annotated)
        plans["suprem"] = {**(plans.get("suprem") or {}), "mirroring": plan.to_dict()}
        self._sided_plan = plan
        return plan

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        hook = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size
        rotation, dummy_2d, initial_patch_size, axes = hook()
        plan = self.sided_mirroring()
        dim = len(self.configuration_manager.patch_size)
        axes = plan.mirror_axes(axes, dim)
        self.inference_allowed_mirroring_axes = axes
        plane = plan.spatial_lr_axes(2) if dim == 2 else [a for a in plan.spatial_lr_axes(3) if a > 0]
        if (plan.sided and plan.policy != "nnunet" and (dim == 2 or dummy_2d) and plane
                and max(abs(float(r)) for r in np.atleast_1d(rotation)) > MAX_SIDED_ROTATION + 1e-9):
            rotation = (-MAX_SIDED_ROTATION, MAX_SIDED_ROTATION)  # nnU-Net's larger initial patch still fits
            self.print_to_log_file("in-plane rotation capped at +-30 degrees: a larger one turns left into right")
        self.print_to_log_file(f"{plan.describe()}; training mirror axes {axes}")
        return rotation, dummy_2d, initial_patch_size, axes

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, *args, **kwargs):
        composed = super().get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales,
                                                   mirror_axes, do_dummy_2d_data_aug, *args, **kwargs)
        plan = self.sided_mirroring()
        axis = plan.swap_axis(len(patch_size))
        if axis is None or axis not in tuple(mirror_axes or ()):
            return composed
        composed.transforms = [SwapMirrorTransform(t.allowed_axes, axis, plan.pairs)
                               if type(t) is MirrorTransform else t for t in composed.transforms]
        return composed

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's validation; its predictor does not swap channels, so under swap it mirrors without the LR axis."""
        plan = self.sided_mirroring()
        axis = plan.swap_axis(len(self.configuration_manager.patch_size))
        saved = self.inference_allowed_mirroring_axes
        if axis is not None and saved:
            self.inference_allowed_mirroring_axes = tuple(a for a in saved if a != axis)
        try:
            return super().perform_actual_validation(save_probabilities)
        finally:
            self.inference_allowed_mirroring_axes = saved
