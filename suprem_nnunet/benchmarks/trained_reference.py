"""A small nnU-Net PlainConvUNet trained in seconds on band phantoms, for checks that need a trained model.

`reference_nets.IntensityBandNet` is a hand-made network; a benchmark or test that compares two ways
of running a model (e.g. the fast ROI against the full window) should also hold on a network that
was trained. `train_band_unet` trains a PlainConvUNet (no normalisation layers, so absolute HU
count; conv bias on) with Adam on cross-entropy + soft Dice over random patches of `band_phantom`
volumes made directly at the plan's spacing, where the organs sit `hu_step` HU apart, and returns it
as a `TrainedModel` with nnU-Net default plans (`band_plans`: CTNormalization as HU / 100, nnU-Net's
resampling), which our predictor and nnunetv2's run as they run any trained model.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ..models.trained import TrainedModel
from .reference_nets import band_phantom, band_plans

log = logging.getLogger(__name__)

PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


def unet_architecture(features: Sequence[int]) -> dict:
    """The plans' `architecture` entry of a PlainConvUNet with `features` per stage (stride 2 from the
    second stage on), one convolution per stage, no normalisation layers."""
    n = len(features)
    return {"network_class_name": PLAIN_CONV_UNET,
            "arch_kwargs": {"n_stages": n, "features_per_stage": [int(f) for f in features],
                            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * n,
                            "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n - 1), "n_conv_per_stage": [1] * n,
                            "n_conv_per_stage_decoder": [1] * (n - 1), "conv_bias": True, "norm_op": None,
                            "norm_op_kwargs": None, "dropout_op": None, "dropout_op_kwargs": None,
                            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def _training_volumes(num_classes: int, shape_zyx: Sequence[int], hu_step: float, volumes: int, seed: int):
    """[(normalised image (1, x, y, z) float32, labels (x, y, z) int64)] on the network grid (HU / 100 as
    `band_plans`' CTNormalization gives it, in the reader's array order as SimpleITKIO hands it over)."""
    out = []
    for v in range(volumes):
        hu, labels = band_phantom(shape_zyx, num_classes, hu_step=hu_step, seed=seed + v)
        out.append((torch.from_numpy(np.clip(hu, -1000, 1000).astype(np.float32) / 100.0)[None],
                    torch.from_numpy(labels.astype(np.int64))))
    return out


def _random_patch(volumes, patch: Sequence[int], rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    image, labels = volumes[int(rng.integers(len(volumes)))]
    shape = labels.shape
    if rng.random() < 0.5:  # half of the patches centred on a foreground voxel: organs are small
        fg = torch.nonzero(labels)
        centre = fg[int(rng.integers(len(fg)))].numpy()
        start = [int(np.clip(c - p // 2, 0, n - p)) for c, p, n in zip(centre, patch, shape)]
    else:
        start = [int(rng.integers(0, n - p + 1)) for p, n in zip(patch, shape)]
    sl = tuple(slice(s, s + p) for s, p in zip(start, patch))
    return image[(slice(None), *sl)], labels[sl]


def train_band_unet(class_names: Sequence[str], spacing: Sequence[float] = (1.5, 1.5, 1.5),
                    patch: Sequence[int] = (32, 32, 32), features: Sequence[int] = (8, 16, 32),
                    hu_step: float = 60.0, iterations: int = 200, batch_size: int = 2,
                    train_shape_zyx: Sequence[int] = (48, 72, 72), volumes: int = 2, lr: float = 3e-3,
                    seed: int = 0, path="band_unet", train_patch: Sequence[int] = ()) -> TrainedModel:
    """A PlainConvUNet trained for `iterations` steps on `volumes` band phantoms (module doc); its plans are
    `band_plans(spacing, patch, hu_step)` with the U-Net as architecture. Phantoms to predict on must be
    made with the same `hu_step` (`band_phantom(..., hu_step=hu_step)`). `train_patch`: the training
    patch when it is not the plans' `patch` (a network without normalisation layers predicts on any
    patch its strides divide)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    k = len(class_names) + 1
    train_patch = tuple(train_patch) or tuple(patch)
    if any(n < p for n, p in zip(train_shape_zyx, train_patch)):
        raise ValueError(f"training phantoms {tuple(train_shape_zyx)} are smaller than the patch {train_patch}")
    plans = band_plans(k, spacing=spacing, patch=patch, hu_step=hu_step)
    arch = unet_architecture(features)
    plans["configurations"]["3d_fullres"]["architecture"] = arch
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, k, allow_init=True, deep_supervision=False)
        rng = np.random.default_rng(seed)
        data = _training_volumes(k, train_shape_zyx, hu_step, volumes, seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        net.train()
        loss = torch.zeros(())
        for _ in tqdm(range(iterations), desc="training band U-Net", unit="it", leave=False):
            batch = [_random_patch(data, train_patch, rng) for _ in range(batch_size)]
            x, y = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
            logits = net(x)
            probs = logits.softmax(1)
            onehot = F.one_hot(y, k).movedim(-1, 1).float()
            inter, denom = (probs * onehot).sum((0, 2, 3, 4)), (probs + onehot).sum((0, 2, 3, 4))
            loss = F.cross_entropy(logits, y) + 1.0 - ((2 * inter + 1e-5) / (denom + 1e-5))[1:].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
    log.info("band U-Net: %d iterations, last loss %.4f", iterations, float(loss.detach()))
    dataset_json = {"channel_names": {"0": "CT"},
                    "labels": {"background": 0, **{n: i + 1 for i, n in enumerate(class_names)}},
                    "numTraining": volumes, "file_ending": ".nii.gz"}
    state = {n: t.detach().clone() for n, t in net.state_dict().items()}
    return TrainedModel(Path(path), state, plans, dataset_json, "3d_fullres", "nnUNetTrainer", (0, 1, 2))
