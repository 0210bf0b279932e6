"""The catalog of known checkpoints (``catalog.json``): pure data, no torch."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..labels import canonical
from ..errors import InputError

CATALOG_FILE = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class CatalogEntry:
    """One known checkpoint (a SuPreM release or a baseline of the paper)."""

    name: str
    kind: str  # release | baseline
    file: str
    url: str
    backbone: str
    layout: str  # universal | segresnet | models_genesis | swin_ssl | ours
    arch_kwargs: Dict = field(default_factory=dict)
    num_classes: Optional[int] = None
    class_order: Optional[str] = None
    output: str = "sigmoid"
    preset: Optional[str] = None
    description: str = ""
    license: Dict = field(default_factory=dict)
    sha256: Optional[str] = None
    notes: str = ""
    params_backbone: Optional[int] = None
    paper_params: Optional[str] = None
    layout_file: Optional[str] = None

    @property
    def source_classes(self) -> Optional[Tuple[str, ...]]:
        """Class names as the source spells them, in output-channel order (None if unknown)."""
        if self.class_order is None:
            return None
        return tuple(_raw()["class_orders"][self.class_order]["classes"])

    @property
    def classes(self) -> Optional[Tuple[str, ...]]:
        """Unified class names in output-channel order (no background; None if unknown)."""
        src = self.source_classes
        return None if src is None else tuple(canonical(n) for n in src)


@lru_cache(maxsize=1)
def _raw() -> Dict:
    try:
        return json.loads(CATALOG_FILE.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RuntimeError(f"{CATALOG_FILE}: cannot read the zoo catalog ({e})") from None


@lru_cache(maxsize=1)
def catalog() -> Dict[str, CatalogEntry]:
    """All catalog entries by name."""
    known = set(CatalogEntry.__dataclass_fields__)
    out: Dict[str, CatalogEntry] = {}
    for item in _raw()["checkpoints"]:
        extra = set(item) - known
        if extra:
            raise RuntimeError(f"{CATALOG_FILE}: entry {item.get('name')!r} has unknown fields {sorted(extra)}")
        out[item["name"]] = CatalogEntry(**item)
    return out


def entry_names() -> List[str]:
    return list(catalog())


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry `name`; ValueError listing the known names otherwise."""
    try:
        return catalog()[name]
    except KeyError:
        raise InputError(f"unknown zoo checkpoint {name!r}; known: {', '.join(catalog())}") from None


def entry_for_file(file_name: str) -> Optional[CatalogEntry]:
    """The entry whose release file name is `file_name` (basename), if any."""
    base = Path(file_name).name
    for e in catalog().values():
        if e.file == base:
            return e
    return None
