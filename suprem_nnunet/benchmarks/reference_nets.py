"""A deterministic network with smooth output, for checking prediction pipelines against each other.

A random-weight U-Net gives salt-and-pepper masks, and comparing two pipelines' masks by DSC is then
meaningless. `IntensityBandNet` gives class k where the locally averaged (normalised) intensity lies
within `width` of `centers[k-1]`, background elsewhere: smooth organs on a CT, like a trained model's.
With `unet_features > 0` it also runs a small nnU-Net PlainConvUNet (seeded weights) and adds its
output times `unet_scale`, so that a benchmark pays a real network's cost per patch.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from ..models.trained import TrainedModel
from ..errors import InputError

#: dotted name for plans
INTENSITY_BAND_NET = "suprem_nnunet.benchmarks.reference_nets.IntensityBandNet"


class IntensityBandNet(nn.Module):
    """Logits: background 0; class k: max(1 - ((mean_{smooth^3}(x) - centers[k-1]) / width)^2, -2)."""

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 centers: Optional[Sequence[float]] = None, width: float = 0.5, smooth: int = 3,
                 unet_features: int = 0, unet_stages: int = 4, unet_scale: float = 1e-3) -> None:
        super().__init__()
        centers = list(centers) if centers is not None else [float(k) for k in range(1, num_classes)]
        if len(centers) != num_classes - 1:
            raise InputError(f"IntensityBandNet: {num_classes} classes need {num_classes - 1} centers, got {len(centers)}")
        self.register_buffer("centers", torch.tensor(centers, dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.width, self.smooth, self.unet_scale = float(width), int(smooth), float(unet_scale)
        self.unet = None
        if unet_features > 0:
            from dynamic_network_architectures.architectures.unet import PlainConvUNet

            g = torch.random.fork_rng()
            with g:
                torch.manual_seed(0)
                self.unet = PlainConvUNet(
                    input_channels, unet_stages, [min(unet_features * 2 ** i, 320) for i in range(unet_stages)],
                    nn.Conv3d, 3, [1] + [2] * (unet_stages - 1), 2, num_classes, 2, False,
                    nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None, nn.LeakyReLU,
                    {"inplace": True}, deep_supervision=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, :1].float()
        if self.smooth > 1:
            v = F.avg_pool3d(v, self.smooth, 1, self.smooth // 2, count_include_pad=False)
        fg = (1.0 - ((v - self.centers) / self.width) ** 2).clamp(min=-2.0)  # bounded, like trained logits
        out = torch.cat([torch.zeros_like(v), fg], 1)
        if self.unet is not None:
            out = out + self.unet_scale * self.unet(x).float()
        return out.to(x.dtype) if x.dtype != torch.float32 else out


def band_plans(num_classes: int, spacing: Sequence[float] = (1.5, 1.5, 1.5), patch: Sequence[int] = (32, 32, 32),
               hu_step: float = 30.0, unet_features: int = 0) -> dict:
    """nnU-Net default plans (SimpleITKIO, CTNormalization, nnU-Net's resampling) around IntensityBandNet:
    CT normalised as HU / 100; class k sits at (20 + hu_step * (k - 1)) HU, +-0.4 * hu_step."""
    centers = [(20.0 + hu_step * k) / 100.0 for k in range(num_classes - 1)]
    data_kw = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    cfg = {"data_identifier": "band", "preprocessor_name": "DefaultPreprocessor", "batch_size": 1,
           "patch_size": list(patch), "median_image_size_in_voxels": list(patch), "spacing": list(spacing),
           "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False], "batch_dice": False,
           "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": data_kw,
           "resampling_fn_seg": "resample_data_or_seg_to_shape",
           "resampling_fn_seg_kwargs": {**data_kw, "is_seg": True, "order": 1},
           "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
           "resampling_fn_probabilities_kwargs": {**data_kw, "order": 1},
           "architecture": {"network_class_name": INTENSITY_BAND_NET, "_kw_requires_import": [],
                            "arch_kwargs": {"centers": centers, "width": 0.4 * hu_step / 100.0, "smooth": 3,
                                            "unet_features": unet_features}}}
    return {"dataset_name": "Dataset990_Band", "plans_name": "band", "image_reader_writer": "SimpleITKIO",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": {"3d_fullres": cfg},
            "label_manager": "LabelManager", "original_median_spacing_after_transp": list(spacing),
            "original_median_shape_after_transp": list(patch),
            "foreground_intensity_properties_per_channel": {"0": {
                "mean": 0.0, "std": 100.0, "percentile_00_5": -1000.0, "percentile_99_5": 1000.0,
                "min": -1024.0, "max": 3000.0, "median": 40.0}}}


def band_model(class_names: Sequence[str], path="band_model", **plans_kwargs):
    """A `TrainedModel` of IntensityBandNet with nnU-Net default plans (see `band_plans`); no training."""
    from pathlib import Path

    plans = band_plans(len(class_names) + 1, **plans_kwargs)
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    net = IntensityBandNet(1, len(class_names) + 1, **arch)
    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **{n: i + 1 for i, n in
                                                                                 enumerate(class_names)}},
                    "numTraining": 1, "file_ending": ".nii.gz"}
    return TrainedModel(Path(path), net.state_dict(), plans, dataset_json, "3d_fullres", "nnUNetTrainer", (0, 1, 2))


def band_phantom(shape_zyx: Sequence[int], num_classes: int, hu_step: float = 30.0, seed: int = 0,
                 noise_hu: float = 5.0):
    """(int16 HU array (z, y, x), label array): air, an elliptic body of fat, and `num_classes - 1` organ
    ellipsoids at the HU values `band_plans` maps to classes 1..K-1, with Gaussian noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape_zyx)
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    hu = np.full(tuple(shape_zyx), -1000.0, np.float32)
    body = (yy / 0.75) ** 2 + (xx / 0.9) ** 2 <= 1.0
    body = np.broadcast_to(body, hu.shape) & (np.abs(zz) <= 0.95)
    hu[body] = -100.0
    labels = np.zeros(hu.shape, np.uint8)
    k = num_classes - 1
    grid = int(np.ceil(np.sqrt(k)))
    for i in range(k):
        cy, cx = -0.45 + 0.9 * (i // grid + 0.5) / grid, -0.6 + 1.2 * (i % grid + 0.5) / grid
        cz = rng.uniform(-0.4, 0.4)
        r = np.array([rng.uniform(0.2, 0.4), 0.35 / grid, 0.5 / grid])
        m = ((zz - cz) / r[0]) ** 2 + ((yy - cy) / r[1]) ** 2 + ((xx - cx) / r[2]) ** 2 <= 1.0
        hu[m] = 20.0 + hu_step * i
        labels[m] = i + 1
    hu += rng.normal(0, noise_hu, hu.shape).astype(np.float32)
    return np.clip(hu, -1024, 3000).astype(np.int16), labels
