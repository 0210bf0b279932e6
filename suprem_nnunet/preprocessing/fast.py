"""nnU-Net's preprocessing with nnU-Net's default image resampling computed by torch.

`FastConfigurationManager` resolves a configuration's `resample_data_or_seg_to_shape` (nnU-Net's
default: skimage spline order 3 for images, per-label order 1 for segmentations) to
`resampling.resample_like_nnunet` and `resample_seg_like_nnunet`: the same numbers within float32
rounding, several times faster. Other resampling functions (SuPreM presets) are resolved as
`SupremConfigurationManager` resolves them. Used by prediction (`inference.fast_predictor`) and, through
`run.SupremPreprocessor`, by dataset preprocessing.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from .plans_manager import SupremConfigurationManager
from .resampling import resample_like_nnunet, resample_seg_like_nnunet

#: nnU-Net's default resampling function, as plans name it
NNUNET_DEFAULT_RESAMPLING = "resample_data_or_seg_to_shape"


class FastConfigurationManager(SupremConfigurationManager):
    """Configuration whose nnU-Net-default image and segmentation resampling run with torch
    (`resample_like_nnunet`, `resample_seg_like_nnunet`)."""

    @property
    def resampling_fn_data(self) -> Callable:
        if self.configuration["resampling_fn_data"] == NNUNET_DEFAULT_RESAMPLING:
            return partial(resample_like_nnunet, **self.configuration["resampling_fn_data_kwargs"])
        return super().resampling_fn_data

    @property
    def resampling_fn_seg(self) -> Callable:
        if self.configuration["resampling_fn_seg"] == NNUNET_DEFAULT_RESAMPLING:
            return partial(resample_seg_like_nnunet, **self.configuration["resampling_fn_seg_kwargs"])
        return super().resampling_fn_seg


def as_fast_configuration(configuration_manager: ConfigurationManager) -> FastConfigurationManager:
    """`configuration_manager` itself if it is a FastConfigurationManager, else one on the same dict."""
    if isinstance(configuration_manager, FastConfigurationManager):
        return configuration_manager
    return FastConfigurationManager(configuration_manager.configuration)
