"""Weights ready for fine-tuning, from a release checkpoint or an exported model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..networks import get_backbone
from ..networks.checkpoint import StateDict
from .convert import LoadReport


@dataclass
class PretrainedWeights:
    """Weights ready for fine-tuning one of our adapters.

    `state_dict` uses our adapter's key names; it holds the plain class head only if one exists and
    its classes are known, in which case `class_names` lists the head's output channels in order
    (unified names; "background" first when the head has a background channel). Otherwise
    `class_names` is None and no head key is present.
    """

    backbone: str
    state_dict: StateDict
    class_names: Optional[List[str]]
    arch_kwargs: Dict
    source: str
    layout: str
    report: Optional[LoadReport] = field(default=None, repr=False)

    @property
    def head_keys(self) -> Tuple[str, ...]:
        return get_backbone(self.backbone).head_keys
