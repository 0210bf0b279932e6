"""Experiment planning per backbone, on top of nnunetv2's planners.

`SupremPlannerMixin` changes three things of an nnunetv2 planner and inherits the rest:
the plans name (one plans file per backbone), optional CPU caps (patch size, network width,
batch size) and a `suprem` block in the plans that records the backbone and the caps.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple, Type

import numpy as np

from ..networks.registry import get_backbone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanningCaps:
    """Limits that make a run fit a small machine; None keeps nnU-Net's own choice."""

    max_patch: Optional[Tuple[int, int, int]] = None  # voxels per axis (z, y, x after transpose)
    base_features: Optional[int] = None  # features of the first stage (nnU-Net: 32)
    max_features: Optional[int] = None  # cap of features per stage (nnU-Net 3d: 320)
    batch_size: Optional[int] = None  # fixed batch size


class SupremPlannerMixin:
    """Mix in before an nnunetv2 ExperimentPlanner subclass (see `planner_class`)."""

    backbone: str = "nnunet"
    caps: PlanningCaps = PlanningCaps()

    def __init__(self, dataset_name_or_id, gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: Optional[str] = None,
                 overwrite_target_spacing=None, suppress_transpose: bool = False) -> None:
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name,
                         plans_name or plans_name_for(self.backbone), overwrite_target_spacing, suppress_transpose)
        if self.caps.base_features:
            self.UNet_base_num_features = int(self.caps.base_features)
        if self.caps.max_features:
            self.UNet_max_features_3d = int(self.caps.max_features)
            self.UNet_max_features_2d = int(self.caps.max_features)

    def static_estimate_VRAM_usage(self, *args, **kwargs):
        # nnunetv2 calls torch.set_num_threads(nnUNet_n_proc_DA), which fails for the CPU setting 0
        old = os.environ.get("nnUNet_n_proc_DA")
        if old is not None and old.strip() == "0":
            os.environ["nnUNet_n_proc_DA"] = "1"
        try:
            return super().static_estimate_VRAM_usage(*args, **kwargs)
        finally:
            if old is not None:
                os.environ["nnUNet_n_proc_DA"] = old

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier: str,
                                    approximate_n_voxels_dataset: float, _cache: dict) -> dict:
        if self.caps.max_patch is not None:
            cap = self.caps.max_patch[-len(spacing):]
            median_shape = np.minimum(np.asarray(median_shape, float), np.asarray(cap, float))
        plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,
                                                   approximate_n_voxels_dataset, _cache)
        if self.caps.batch_size:
            plan["batch_size"] = int(self.caps.batch_size)
        return plan

    def plan_experiment(self) -> dict:
        plans = super().plan_experiment()
        plans["suprem"] = {"backbone": self.backbone, "caps": {k: v for k, v in asdict(self.caps).items()},
                           "preset": None}
        self.save_plans(plans)
        return plans


def plans_name_for(backbone: str) -> str:
    """Plans identifier of a backbone, e.g. 'suprem_nnunet'."""
    return f"suprem_{get_backbone(backbone).name}"


def planner_class(backbone: str = "nnunet", caps: PlanningCaps = PlanningCaps()) -> Type:
    """A planner class for `backbone` with `caps`, to pass to nnunetv2's planning API."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import \
        nnUNetPlannerResEncM

    b = get_backbone(backbone)
    bases: Dict[str, Type] = {"nnunet": ExperimentPlanner, "resenc": nnUNetPlannerResEncM}
    if b.name not in bases:
        raise NotImplementedError(f"backbone {b.name!r} has no planner yet")
    name = f"Suprem{b.name.capitalize()}Planner"
    return type(name, (SupremPlannerMixin, bases[b.name]), {"backbone": b.name, "caps": caps})


def plan_and_preprocess(dataset: str, backbone: str = "nnunet", configurations: Sequence[str] = ("3d_fullres",),
                        caps: PlanningCaps = PlanningCaps(), num_processes: int = 2,
                        gpu_memory_gb: float = 8.0, verify: bool = True) -> dict:
    """Fingerprint `dataset` (full name), plan for `backbone` and preprocess `configurations`.

    Returns the plans dict. Needs the nnU-Net folder env vars (see `paths.setup_environment`).
    """
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                     plan_experiment_dataset, preprocess_dataset)
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

    dataset_id = convert_dataset_name_to_id(dataset)
    extract_fingerprint_dataset(dataset_id, num_processes=num_processes, check_dataset_integrity=verify,
                                clean=True, verbose=False)
    plans, identifier = plan_experiment_dataset(dataset_id, planner_class(backbone, caps),
                                                gpu_memory_target_in_gb=gpu_memory_gb)
    for c in configurations:
        if c not in plans["configurations"]:
            raise ValueError(f"configuration {c!r} was not planned for {dataset} "
                             f"(planned: {', '.join(plans['configurations'])})")
    preprocess_dataset(dataset_id, identifier, tuple(configurations), [num_processes] * len(configurations))
    return plans
