"""Experiment planning per backbone, on top of nnunetv2's planners.

`SupremPlannerMixin` changes four things of an nnunetv2 planner and inherits the rest:
the plans name (one plans file per backbone), optional CPU caps (patch size, network width,
batch size), the number of GPUs (the memory model and the batch size are per GPU; the plans'
`batch_size` is the global batch nnU-Net splits over the DDP ranks) and a `suprem` block in the
plans that records the backbone, the caps, the GPUs and how mirroring treats the patient's
left-right axis for the dataset's left/right classes (mirroring.py).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Type

import numpy as np

from .. import paths
from ..dataset.raw import copy_annotated_classes
from ..networks.registry import get_backbone
from .mirroring import DEFAULT_POLICY, check_policy, mirroring_for_dataset
from ..preprocessing.plans_manager import RAS_READER
from ..preprocessing.resampling import ORIGIN_ALIGNED, RESAMPLE_THEN_WINDOW
from ..dataset.raw import atomic_write_json
from ..dataset.raw_checks import check_raw_dataset
from .presets import load_preset
from ..preprocessing.run import preprocess_dataset
from .fingerprint import SupremFingerprintExtractor
from ..errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanningCaps:
    """Limits that make a run fit a small machine; None keeps nnU-Net's own choice."""

    max_patch: Optional[Tuple[int, int, int]] = None  # voxels per axis (z, y, x after transpose)
    base_features: Optional[int] = None  # features of the first stage (nnU-Net: 32)
    max_features: Optional[int] = None  # cap of features per stage (nnU-Net 3d: 320)
    batch_size: Optional[int] = None  # fixed batch size


#: arch kwarg that sets the width of each fixed-topology backbone (what --base-features changes)
WIDTH_KWARG = {"unet": "base_features", "segresnet": "init_filters", "swinunetr": "feature_size"}
#: share of the GPU memory target the training step may use (allocator, cuDNN workspace, data)
MEMORY_HEADROOM = 0.8
#: activation memory under mixed precision relative to the fp32 measurement
AMP_ACTIVATION_FACTOR = 0.55


class SupremPlannerMixin:
    """Mix in before an nnunetv2 ExperimentPlanner subclass (see `planner_class`)."""

    backbone: str = "nnunet"
    caps: PlanningCaps = PlanningCaps()
    preset: Optional[dict] = None  # a SuPreM-recipe preset (plans/*.json) fixes spacing, patch, intensity
    arch_override: Optional[dict] = None  # arch kwargs of given weights (e.g. a release's width)
    num_gpus: int = 1  # DDP processes the plans are for: global batch = per-GPU batch x num_gpus
    left_right_mirroring: str = DEFAULT_POLICY  # see mirroring.py: swap | omit | nnunet

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
        b = get_backbone(self.backbone)
        if b.fixed_topology and len(spacing) == 3:
            plan = self._fixed_topology_plan(plan, np.asarray(spacing, float), np.asarray(median_shape, float),
                                             approximate_n_voxels_dataset)
        if self.caps.batch_size:
            plan["batch_size"] = int(self.caps.batch_size)
        return with_num_gpus(plan, self.num_gpus)

    # ------------------------------------------------------------------ fixed-topology backbones
    def arch_kwargs(self) -> dict:
        b = get_backbone(self.backbone)
        kwargs = dict((self.preset or {}).get("arch_kwargs") or b.default_arch_kwargs)
        if self.caps.base_features and b.name in WIDTH_KWARG:
            kwargs[WIDTH_KWARG[b.name]] = int(self.caps.base_features)
        kwargs.update(self.arch_override or {})
        return kwargs

    def _memory(self, cls, patch, batch: int, kwargs: dict) -> float:
        n_in = len(self.dataset_json["channel_names"])
        n_out = len(self.dataset_json["labels"])
        act = cls.training_memory_bytes(patch, 1, n_in, n_out, bytes_per_param=0, **kwargs)
        params = cls.training_memory_bytes(patch, 1, n_in, n_out, **kwargs) - act
        return AMP_ACTIVATION_FACTOR * act * batch + params

    def _fixed_topology_plan(self, plan: dict, spacing: np.ndarray, median_shape: np.ndarray,
                             n_voxels_dataset: float) -> dict:
        """Patch and batch size for a backbone with a fixed topology, from its memory model."""
        import pydoc

        b = get_backbone(self.backbone)
        cls = pydoc.locate(b.network_class_name)
        kwargs = self.arch_kwargs()
        div, min_side = b.divisible_by or 1, max(b.min_patch_side or 1, b.divisible_by or 1)
        budget = self.UNet_vram_target_GB * 1024 ** 3 * MEMORY_HEADROOM

        def down(v):
            return max(min_side, int(v // div) * div)

        def up(v):
            return max(min_side, int(np.ceil(v / div)) * div)

        if self.preset is not None:  # the recipe's patch, unless capped for a small machine
            cap = self.caps.max_patch or self.preset["patch_size"]
            patch = [down(min(int(p), int(c))) for p, c in zip(self.preset["patch_size"], cap)]
        else:
            tmp = 1 / spacing
            patch = tmp * (256 ** 3 / np.prod(tmp)) ** (1 / 3)
            patch = [down(min(p, up(m))) for p, m in zip(patch, median_shape)]
            while self._memory(cls, patch, 2, kwargs) > budget:
                ratios = [p / m if p > min_side else -1 for p, m in zip(patch, median_shape)]
                axis = int(np.argmax(ratios))
                if ratios[axis] < 0:
                    log.warning("%s: even the smallest patch %s exceeds %.1f GB", b.name, patch,
                                self.UNet_vram_target_GB)
                    break
                patch[axis] = down(patch[axis] - div)
        cls.check_patch_size(patch)
        per_sample = self._memory(cls, patch, 1, kwargs) - self._memory(cls, patch, 0, kwargs)
        fixed = self._memory(cls, patch, 0, kwargs)
        batch = int((budget - fixed) // max(per_sample, 1))
        cover = int(round(n_voxels_dataset * self.max_dataset_covered / float(np.prod(patch))))
        batch = max(self.UNet_min_batch_size, min(batch, cover))
        plan = dict(plan)
        plan.update({
            "patch_size": patch,
            "batch_size": batch,
            "architecture": {"network_class_name": b.network_class_name, "arch_kwargs": kwargs,
                             "_kw_requires_import": []},
            "estimated_training_memory_gb": round(self._memory(cls, patch, batch, kwargs) / 1024 ** 3, 2),
        })
        return plan

    def determine_transpose(self):
        """A preset fixes the array axes to the release's (x, y, z) = (R, A, S): the RAS reader gives
        (z, y, x), transposed by [2, 1, 0]; otherwise nnU-Net's choice from the fingerprint spacing."""
        if self.preset is not None:
            order = [int(i) for i in self.preset.get("transpose_forward", [2, 1, 0])]
            return order, [int(i) for i in np.argsort(order)]
        return super().determine_transpose()

    def plan_experiment(self) -> dict:
        plans = super().plan_experiment()
        b = get_backbone(self.backbone)
        if b.fixed_topology:  # 3D networks: only the full-resolution 3D configuration applies
            plans["configurations"] = {k: v for k, v in plans["configurations"].items() if k == "3d_fullres"}
        if self.preset is not None:
            lo, hi = self.preset["intensity"]["clip"]
            s0, s1 = self.preset["intensity"].get("scale_to", [0.0, 1.0])
            # the recipe's window as the statistics nnU-Net's CTNormalization would turn into the same clip to
            # [lo, hi] and scaling to [s0, s1]; the preset applies it after resampling instead, as the release
            # does (NoNormalization + resample_then_window, see preprocessing/resampling.py)
            std = (hi - lo) / (s1 - s0)
            props = {"percentile_00_5": lo, "percentile_99_5": hi, "mean": lo - s0 * std, "std": std,
                     "min": lo, "max": hi, "median": (lo + hi) / 2}
            plans["foreground_intensity_properties_per_channel"] = {"0": props}
            for cfg in plans["configurations"].values():
                cfg["normalization_schemes"] = ["NoNormalization"]
                cfg.update(preset_resampling(self.preset))
            plans["image_reader_writer"] = preset_reader(self.preset)
        plans["suprem"] = {"backbone": self.backbone, "caps": {k: v for k, v in asdict(self.caps).items()},
                           "preset": (self.preset or {}).get("name"), "num_gpus": self.num_gpus}
        plans["suprem"]["mirroring"] = mirroring_for_dataset(Path(self.raw_dataset_folder), self.dataset_json, plans,
                                                             self.left_right_mirroring).to_dict()
        if self.preset is not None:
            plans["suprem"]["recipe"] = {k: self.preset[k] for k in ("orientation", "transpose_forward", "spacing",
                                                                       "intensity", "patch_size", "sliding_window")
                                         if k in self.preset}
        self._write_plans(plans)
        return plans

    def _write_plans(self, plans: dict) -> None:
        """Write the final plans as they are (nnU-Net's save_plans would merge the configurations
        of the file it wrote a moment ago back in, e.g. the 2d one a 3D-only backbone dropped)."""
        from nnunetv2.utilities.json_export import recursive_fix_for_json_export


        recursive_fix_for_json_export(plans)
        atomic_write_json(paths.preprocessed_root() / self.dataset_name / f"{self.plans_identifier}.json", plans)


def preset_reader(preset: dict) -> str:
    """Dotted name of the image reader/writer that gives a preset's orientation (RAS arrays)."""
    orientation = preset.get("orientation", "RAS")
    if orientation != "RAS":
        raise InputError(f"preset {preset.get('name')!r}: orientation {orientation!r} is not supported (only RAS)")
    return RAS_READER


def preset_resampling(preset: dict) -> dict:
    """Configuration entries that resample like the release (see preprocessing/resampling.py): on its
    grid (voxel 0 fixed), images with the preset's interpolation and then windowed, labels nearest."""
    orders = {"nearest": 0, "linear": 1, "cubic": 3}
    image = (preset.get("resampling") or {}).get("image", "linear")
    if image not in orders:
        raise InputError(f"preset {preset.get('name')!r}: image resampling {image!r} is not one of {', '.join(orders)}")
    intensity = preset["intensity"]
    data_kwargs = {"is_seg": False, "order": orders[image], "window": [float(v) for v in intensity["clip"]],
                   "scale_to": [float(v) for v in intensity.get("scale_to", [0.0, 1.0])]}
    return {"resampling_fn_data": RESAMPLE_THEN_WINDOW, "resampling_fn_data_kwargs": data_kwargs,
            "resampling_fn_seg": ORIGIN_ALIGNED, "resampling_fn_seg_kwargs": {"is_seg": True, "order": 0},
            "resampling_fn_probabilities": ORIGIN_ALIGNED,
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1}}


def plans_name_for(backbone: str, preset: Optional[str] = None) -> str:
    """Plans identifier of a backbone, e.g. 'suprem_nnunet' (or 'suprem_unet_preset-suprem')."""
    name = f"suprem_{get_backbone(backbone).name}"
    return f"{name}_preset-{preset}" if preset else name


def with_num_gpus(configuration_plans: dict, num_gpus: int) -> dict:
    """A configuration's plans for `num_gpus` DDP processes (a copy): `batch_size_per_gpu` is the batch
    one GPU's memory fits, `batch_size` the global batch (per GPU x num_gpus) nnU-Net splits over the
    ranks, `num_gpus` what the trainer checks against torchrun's world size."""
    if int(num_gpus) < 1:
        raise InputError(f"--num-gpus must be at least 1, got {num_gpus}")
    cfg = dict(configuration_plans)
    per_gpu = int(cfg.get("batch_size_per_gpu", int(cfg["batch_size"]) // int(cfg.get("num_gpus", 1))))
    cfg.update({"batch_size_per_gpu": per_gpu, "num_gpus": int(num_gpus), "batch_size": per_gpu * int(num_gpus)})
    return cfg


def plans_for_num_gpus(plans: dict, num_gpus: int) -> dict:
    """Whole plans re-addressed to `num_gpus` processes (e.g. pre-trained plans taken to fine-tuning
    on another number of GPUs); the caller's dict is untouched."""
    out = dict(plans)
    out["configurations"] = {k: with_num_gpus(v, num_gpus) if "batch_size" in v else dict(v)
                             for k, v in plans["configurations"].items()}
    if isinstance(plans.get("suprem"), dict):
        out["suprem"] = {**plans["suprem"], "num_gpus": int(num_gpus)}
    return out


def planner_class(backbone: str = "nnunet", caps: PlanningCaps = PlanningCaps(),
                  preset: Optional[dict] = None, arch_kwargs: Optional[dict] = None, num_gpus: int = 1,
                  left_right_mirroring: str = DEFAULT_POLICY) -> Type:
    """A planner class for `backbone` with `caps` (and optionally a preset), for `num_gpus` DDP
    processes and a left-right mirroring policy (mirroring.py), for nnunetv2's planning API."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import \
        nnUNetPlannerResEncM

    b = get_backbone(backbone)
    base = nnUNetPlannerResEncM if b.name == "resenc" else ExperimentPlanner
    name = f"Suprem{b.name.capitalize()}Planner"
    if arch_kwargs and not b.fixed_topology:
        raise InputError(f"backbone {b.name!r} takes its architecture from the fingerprint, not from arch kwargs")
    with_num_gpus({"batch_size": 1}, num_gpus)  # validates
    return type(name, (SupremPlannerMixin, base), {"backbone": b.name, "caps": caps, "preset": preset,
                                                   "arch_override": arch_kwargs, "num_gpus": int(num_gpus),
                                                   "left_right_mirroring": check_policy(left_right_mirroring)})


def drop_unreadable_fingerprint(path: Path) -> None:
    """nnU-Net reuses an existing fingerprint but writes it in place: delete one that a killed run
    left truncated (not valid JSON), so that it is extracted again instead of failing to parse."""
    if not path.is_file():
        return
    try:
        json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        log.warning("%s: unreadable (left by an interrupted run?); extracting the fingerprint again", path)
        path.unlink()


def plan_and_preprocess(dataset: str, backbone: str = "nnunet", configurations: Sequence[str] = ("3d_fullres",),
                        caps: PlanningCaps = PlanningCaps(), num_processes: int = 2,
                        gpu_memory_gb: float = 24.0, verify: bool = True, preset: Optional[str] = None,
                        arch_kwargs: Optional[dict] = None, clean: bool = False, num_gpus: int = 1,
                        left_right_mirroring: str = DEFAULT_POLICY) -> dict:
    """Fingerprint `dataset` (full name), plan for `backbone` and preprocess `configurations`.

    `num_gpus` > 1 plans for DDP on that many GPUs: the memory model (and `gpu_memory_gb`) stays per
    GPU, the plans' batch size is the global one (per-GPU batch x num_gpus), see `with_num_gpus`.

    `preset='suprem'` takes spacing, patch and intensity handling from the backbone's SuPreM-recipe
    preset in `plans/` (the preprocessing of the released checkpoints) instead of the fingerprint.
    An existing fingerprint is reused (planning another backbone needs no new one) unless `clean`.
    `left_right_mirroring` (swap | omit | nnunet) is how mirroring treats the patient's left-right axis
    when the classes hold left/right pairs; the decision is recorded in plans["suprem"]["mirroring"].

    Returns the plans dict. Needs the nnU-Net folder env vars (see `paths.setup_environment`).
    """
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                     plan_experiment_dataset)
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id


    dataset_id = convert_dataset_name_to_id(dataset)
    drop_unreadable_fingerprint(paths.preprocessed_root() / dataset / "dataset_fingerprint.json")
    if verify:
        check_raw_dataset(paths.raw_root() / dataset)  # one-line errors for broken cases, before nnU-Net's asserts
    extract_fingerprint_dataset(dataset_id, SupremFingerprintExtractor, num_processes=num_processes,
                                check_dataset_integrity=verify, clean=clean, verbose=False)
    recipe, spacing = None, None
    if preset is not None:
        if preset != "suprem":
            raise InputError(f"unknown preset {preset!r}; the only preset is 'suprem'")

        recipe = load_preset(backbone)
        spacing = tuple(float(v) for v in recipe["spacing"])
    plans, identifier = plan_experiment_dataset(dataset_id, planner_class(backbone, caps, recipe, arch_kwargs,
                                                                          num_gpus, left_right_mirroring),
                                                gpu_memory_target_in_gb=gpu_memory_gb,
                                                overwrite_target_spacing=spacing,
                                                overwrite_plans_name=plans_name_for(backbone, preset))
    for c in configurations:
        if c not in plans["configurations"]:
            raise InputError(f"configuration {c!r} was not planned for {dataset} "
                             f"(planned: {', '.join(plans['configurations'])})")
    preprocess_dataset(dataset_id, identifier, tuple(configurations), [num_processes] * len(configurations))
    copy_annotated_classes(paths.raw_root() / dataset, paths.preprocessed_root() / dataset)  # training reads it there
    return plans
