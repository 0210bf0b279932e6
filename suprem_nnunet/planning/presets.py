"""SuPreM-recipe presets: the JSON files in the top-level ``plans/`` package (pure data)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from ..networks.registry import get_backbone
from ..errors import InputError


def presets_dir() -> Path:
    """``plans/`` of an installed package, else the one next to ``suprem_nnunet/`` in a checkout."""
    try:
        import plans  # installed as a package (setup.py ships plans/*.json)

        return Path(plans.__file__).parent
    except ImportError:
        return Path(__file__).resolve().parents[2] / "plans"


def list_presets() -> List[str]:
    return sorted(p.name for p in presets_dir().glob("*.json"))


def load_preset(name_or_backbone: str) -> Dict:
    """A preset by file name (``suprem_unet.json``) or by backbone name (``unet``)."""
    name = name_or_backbone
    if not name.endswith(".json"):
        preset = get_backbone(name).preset
        if preset is None:
            raise InputError(f"backbone {name!r} has no SuPreM preset; presets: {', '.join(list_presets())}")
        name = preset
    p = presets_dir() / name
    if not p.is_file():
        raise InputError(f"{p}: preset not found; presets: {', '.join(list_presets())}")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: invalid JSON ({e})") from None
