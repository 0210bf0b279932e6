"""Synthetic abdominal CT phantoms (the embedded default data of the demo and the tests)."""
from .phantom import PHANTOM_CLASSES, Phantom, PhantomGenerator, direction_from_code
from .profiles import PHASE_OFFSETS, PROFILES, SourceProfile, get_profile

__all__ = ["PHANTOM_CLASSES", "Phantom", "PhantomGenerator", "direction_from_code", "PHASE_OFFSETS", "PROFILES",
           "SourceProfile", "get_profile"]
