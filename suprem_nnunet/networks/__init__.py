"""Networks and their adapters; see registry.py for the contract every backbone follows."""
from .registry import BACKBONES, Backbone, get_backbone

__all__ = ["BACKBONES", "Backbone", "get_backbone"]
