"""nnU-Net's PlansManager and ConfigurationManager, resolving our classes and functions by dotted name.

nnunetv2 2.8.1 looks `plans['image_reader_writer']` up by class name inside `nnunetv2.imageio` only, and
the resampling functions of a configuration inside `nnunetv2.preprocessing.resampling` only. Plans
written for a SuPreM preset name `suprem_nnunet.preprocessing.ras_io.RASSimpleITKIO` and
`suprem_nnunet.preprocessing.resampling.resample_origin_aligned`; every place of ours that hands
plans to nnunetv2 (preprocessing, trainer, predictor) passes these managers.
"""
from __future__ import annotations

import pydoc
from functools import partial
from typing import Callable, Type

from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name
from nnunetv2.preprocessing.resampling.utils import recursive_find_resampling_fn_by_name
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from ..errors import InputError

#: the reader/writer of plans made with a SuPreM preset (RAS arrays)
RAS_READER = "suprem_nnunet.preprocessing.ras_io.RASSimpleITKIO"


def reader_writer_class(name: str) -> Type[BaseReaderWriter]:
    """A reader/writer class from a dotted name (ours), else by name from nnunetv2.imageio."""
    if "." not in name:
        return recursive_find_reader_writer_by_name(name)
    cls = pydoc.locate(name)
    if not (isinstance(cls, type) and issubclass(cls, BaseReaderWriter)):
        raise InputError(f"plans: image_reader_writer {name!r} is not an importable nnU-Net reader/writer class")
    return cls


def resampling_function(name: str) -> Callable:
    """A resampling function from a dotted name (ours), else by name from nnunetv2's resampling package."""
    if "." not in name:
        return recursive_find_resampling_fn_by_name(name)
    fn = pydoc.locate(name)
    if not callable(fn):
        raise InputError(f"plans: resampling function {name!r} is not importable")
    return fn


class SupremConfigurationManager(ConfigurationManager):
    """ConfigurationManager whose resampling functions may be given by dotted name."""

    def _resampling(self, key: str) -> Callable:
        return partial(resampling_function(self.configuration[key]), **self.configuration[f"{key}_kwargs"])

    @property
    def resampling_fn_data(self) -> Callable:
        return self._resampling("resampling_fn_data")

    @property
    def resampling_fn_seg(self) -> Callable:
        return self._resampling("resampling_fn_seg")

    @property
    def resampling_fn_probabilities(self) -> Callable:
        return self._resampling("resampling_fn_probabilities")


def as_suprem_configuration(configuration_manager: ConfigurationManager) -> SupremConfigurationManager:
    """`configuration_manager` itself if it is ours, else ours on the same configuration dict."""
    if isinstance(configuration_manager, SupremConfigurationManager):
        return configuration_manager
    return SupremConfigurationManager(configuration_manager.configuration)


class SupremPlansManager(PlansManager):
    """PlansManager whose `image_reader_writer_class` also resolves dotted class names."""

    @property
    def image_reader_writer_class(self) -> Type[BaseReaderWriter]:
        return reader_writer_class(self.plans["image_reader_writer"])

    def get_configuration(self, configuration_name: str) -> SupremConfigurationManager:
        return as_suprem_configuration(super().get_configuration(configuration_name))

    @property
    def names_own_code(self) -> bool:
        """True when the plans name a reader/writer or resampling function nnunetv2's lookups cannot find."""
        names = [self.plans["image_reader_writer"]] + [
            c.get(k, "") for c in self.plans["configurations"].values()
            for k in ("resampling_fn_data", "resampling_fn_seg", "resampling_fn_probabilities")]
        return any("." in n for n in names)


def as_suprem(plans_manager: PlansManager) -> SupremPlansManager:
    """`plans_manager` itself if it is ours, else a SupremPlansManager on the same plans dict."""
    if isinstance(plans_manager, SupremPlansManager):
        return plans_manager
    return SupremPlansManager(plans_manager.plans)
