"""The local zoo store: files the user imported, with their sha256.

Location: ``$SUPREM_ZOO`` or ``~/.suprem_zoo`` (read when called, not at import). Layout::

    <store>/index.json                   {"checkpoints": {name: {...}}, "models": {name: {...}}}
    <store>/checkpoints/<name>.pth       imported release / baseline files (copied)
    <store>/models/<name>/...            imported exported models (see archive.py)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Optional, Union

from .catalog import entry_for_file, get_entry, catalog
from ..errors import InputError

PathLike = Union[str, Path]


class ZooError(InputError):
    """A zoo operation that cannot proceed; one-line message naming the file or entry."""


def store_root() -> Path:
    """The store folder ($SUPREM_ZOO or ~/.suprem_zoo), created if needed."""
    root = Path(os.environ.get("SUPREM_ZOO") or Path.home() / ".suprem_zoo").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_index() -> Dict:
    p = store_root() / "index.json"
    if not p.is_file():
        return {"checkpoints": {}, "models": {}}
    try:
        idx = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ZooError(f"{p}: corrupt zoo index ({e})") from None
    idx.setdefault("checkpoints", {})
    idx.setdefault("models", {})
    return idx


def write_index(index: Dict) -> None:
    p = store_root() / "index.json"
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".index.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    os.replace(tmp, p)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def import_checkpoint(path: PathLike, name: Optional[str] = None, overwrite: bool = False) -> Dict:
    """Copy a downloaded checkpoint into the store under `name` and record its sha256.

    `name` defaults to the catalog entry whose file name matches, else the file stem. If the catalog
    knows the sha256 of that entry, a different file is refused. The file must load safely
    (weights_only) and hold a recognised layout. Returns the index record.
    """
    # torch only when a checkpoint is imported: the catalog and the store import without it
    from ..networks.checkpoint import load_state_dict_file
    from .convert import detect_layout

    src = Path(path)
    if not src.is_file():
        raise ZooError(f"{src}: file not found")
    entry = get_entry(name) if name in catalog() else (entry_for_file(src.name) if name is None else None)
    name = name or (entry.name if entry else src.stem)
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ZooError(f"{name!r}: zoo names may hold letters, digits, '_', '-' and '.' only")
    idx = read_index()
    if (name in idx["checkpoints"] or name in idx["models"]) and not overwrite:
        raise ZooError(f"{name!r} is already in the zoo store {store_root()}; pass overwrite to replace it")
    digest = sha256_file(src)
    if entry is not None and entry.sha256 and entry.sha256 != digest:
        raise ZooError(f"{src}: sha256 {digest} differs from the catalog's {entry.sha256} for {entry.name}")
    sd = load_state_dict_file(src)
    try:
        layout = detect_layout(sd)
    except ValueError as e:
        raise ZooError(f"{src}: {e}") from None
    dest = store_root() / "checkpoints" / f"{name}.pth"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    rec = {"file": str(dest.relative_to(store_root())), "sha256": digest, "layout": layout,
           "source": str(src.resolve()), "catalog": entry.name if entry else None, "imported": _now(),
           "sha256_verified": bool(entry and entry.sha256)}
    idx["checkpoints"][name] = rec
    write_index(idx)
    return rec


def checkpoint_path(name: str, verify: bool = False) -> Path:
    """Path of the imported checkpoint `name`; ZooError with the import command if absent."""
    rec = read_index()["checkpoints"].get(name)
    if rec is None:
        hint = ""
        if name in catalog():
            e = get_entry(name)
            hint = f"; download {e.file} from {e.url} and run: suprem_zoo import {e.file} --name {name}"
        raise ZooError(f"{name!r} is not imported into the zoo store {store_root()}{hint}")
    p = store_root() / rec["file"]
    if not p.is_file():
        raise ZooError(f"{p}: file of zoo entry {name!r} is missing; import it again")
    if verify and sha256_file(p) != rec["sha256"]:
        raise ZooError(f"{p}: sha256 differs from the one recorded at import; the file changed")
    return p


def model_folder(name: str) -> Path:
    """nnU-Net model folder (``<Trainer>__<plans>__<config>``) of the imported exported model `name`."""
    rec = read_index()["models"].get(name)
    if rec is None:
        raise ZooError(f"{name!r} is not an imported model in the zoo store {store_root()}; "
                       f"run: suprem_zoo import MODEL.zip --name {name}")
    p = store_root() / rec["folder"]
    if not p.is_dir():
        raise ZooError(f"{p}: folder of zoo model {name!r} is missing; import it again")
    return p
