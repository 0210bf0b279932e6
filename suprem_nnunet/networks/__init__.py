"""Networks and their adapters; see registry.py for the contract every backbone follows.

Importing this package imports no torch; the adapters live in `unet3d`, `segresnet`, `swinunetr`
and the release-era class head in `universal`.
"""
from .registry import BACKBONES, Backbone, backbone_for_class, get_backbone

__all__ = ["BACKBONES", "Backbone", "backbone_for_class", "get_backbone", "network_class"]


def network_class(name: str):
    """The adapter class of backbone `name` (imports torch)."""
    import pydoc

    cls = pydoc.locate(get_backbone(name).network_class_name)
    if cls is None:
        raise ImportError(f"network class {get_backbone(name).network_class_name} of backbone "
                          f"{name!r} cannot be imported")
    return cls
