"""Synthetic abdominal CT phantoms (the embedded default data of the demo and the tests)."""
from .phantom import PHANTOM_CLASSES, Phantom, PhantomGenerator, direction_from_code

__all__ = ["PHANTOM_CLASSES", "Phantom", "PhantomGenerator", "direction_from_code"]
