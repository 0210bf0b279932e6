"""Converters from public CT datasets to the unified nnU-Net raw format (`suprem_convert`).

Public API: `convert` (one source), `merge` (several converted datasets into one pre-training
dataset), `SOURCES` (the registry) and `BadInputError`.
"""
from .errors import BadInputError, ConversionError
from .registry import SOURCES, classes, create
from .runner import convert as _convert
from .merge import merge as _merge


def convert(*args, **kwargs):
    """See `dataset_conversion.runner.convert`."""
    return _convert(*args, **kwargs)


def merge(*args, **kwargs):
    """See `dataset_conversion.merge.merge`."""
    return _merge(*args, **kwargs)


__all__ = ["BadInputError", "ConversionError", "SOURCES", "classes", "create", "convert", "merge"]
