"""The completion marker of a preprocessed configuration, holding a manifest of the raw inputs it was
made from.

`<preprocessed>/<dataset>/<data_identifier>.complete` (JSON) is written (atomically) only after
every case of the configuration has been preprocessed; it lies next to the data folder, not in it
(nnU-Net infers the dataset format from the file endings in that folder). It records, per training case,
name, size and mtime (ns) of each image file and of the label file, the sha256 of the raw
`dataset.json` and `annotated_classes.json`, and a digest of the plans. A folder without the marker
(a killed run) is never taken as complete. Comparing the marker with the raw folder as it is now
tells which cases changed (a revision imported with `suprem_review import`, a label edited in
place), which were added or removed, and whether everything must be redone (no marker, other
plans, another dataset.json).
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from ..dataset.raw import ANNOTATED_FILE, atomic_write_json
from ..errors import InputError

log = logging.getLogger(__name__)
MARKER_SUFFIX = ".complete"
VERSION = 1
PathLike = Union[str, Path]


def marker_path(data_dir: PathLike) -> Path:
    """The completion marker of a preprocessed data folder (`<data_identifier>.complete`)."""
    return Path(data_dir).with_name(Path(data_dir).name + MARKER_SUFFIX)


def _sha256(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _file_entry(path: PathLike) -> List:
    st = Path(path).stat()
    return [Path(path).name, int(st.st_size), int(st.st_mtime_ns)]


def code_versions() -> Dict[str, str]:
    """Versions of the code that preprocesses (nnunetv2 and this package)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("nnunetv2", "suprem-nnunet"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def plans_digest(plans: Mapping, configuration: str) -> str:
    """sha256 of the plans as preprocessing reads them, and of the code versions: the
    `suprem.pretrain` block (which checkpoint a fine-tune starts from) is left out, as it does not
    change the preprocessed data."""
    p = copy.deepcopy(dict(plans))
    if isinstance(p.get("suprem"), dict):
        p["suprem"].pop("pretrain", None)
    text = json.dumps({"configuration": configuration, "plans": p, "code": code_versions()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def raw_manifest(raw: PathLike, cases: Mapping[str, Mapping], plans: Mapping, configuration: str) -> Dict:
    """The manifest of the raw inputs as they are now. `cases` is nnU-Net's
    `get_filenames_of_train_images_and_targets` ({case: {"images": [...], "label": ...}})."""
    raw = Path(raw)
    return {"version": VERSION, "configuration": configuration, "plans_sha256": plans_digest(plans, configuration),
            "dataset_json_sha256": _sha256(raw / "dataset.json"),
            "annotated_classes_sha256": _sha256(raw / ANNOTATED_FILE),
            "cases": {c: {"images": [_file_entry(f) for f in files["images"]], "label": _file_entry(files["label"])}
                      for c, files in sorted(cases.items())}}


def read_marker(data_dir: PathLike) -> Optional[Dict]:
    """The marker's manifest, or None when it is missing or unreadable (then nothing counts as done)."""
    p = marker_path(data_dir)
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text())
        if not isinstance(m, dict) or not isinstance(m.get("cases"), dict):
            raise InputError("no 'cases' object")
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("%s: unreadable completion marker (%s); the configuration is preprocessed again", p, e)
        return None
    return m


def write_marker(data_dir: PathLike, manifest: Mapping) -> Path:
    """Write the marker last, atomically: the configuration is complete from now on."""
    p = marker_path(data_dir)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(p, {**manifest, "completed_at": stamp})
    return p


def remove_marker(data_dir: PathLike) -> None:
    """Before a folder is changed: a run killed from now on leaves it incomplete."""
    marker_path(data_dir).unlink(missing_ok=True)


@dataclass
class Staleness:
    """What must be preprocessed again: everything (`redo_all`, with the reason), or the cases whose
    raw files changed or are new (`changed`); `removed` cases are no longer in the raw dataset."""

    redo_all: bool = False
    reason: str = ""
    changed: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    annotated_changed: bool = False

    @property
    def up_to_date(self) -> bool:
        return not (self.redo_all or self.changed or self.removed)

    def describe(self, limit: int = 8) -> str:
        if self.redo_all:
            return self.reason
        parts = []
        if self.changed:
            more = f" and {len(self.changed) - limit} more" if len(self.changed) > limit else ""
            parts.append(f"changed or new case(s) {', '.join(self.changed[:limit])}{more}")
        if self.removed:
            parts.append(f"case(s) no longer in the raw dataset: {', '.join(self.removed[:limit])}")
        return "; ".join(parts) or "up to date"


def compare(old: Optional[Mapping], new: Mapping, present: Sequence[str] = ()) -> Staleness:
    """Staleness of a preprocessed folder whose marker holds `old` against the raw manifest `new`;
    `present` are the cases whose preprocessed files exist (a case missing there is redone too)."""
    if old is None:
        return Staleness(True, "no completion marker (never completed, or killed before the end)")
    if old.get("version") != VERSION:
        return Staleness(True, f"completion marker of another version ({old.get('version')})")
    if old.get("plans_sha256") != new["plans_sha256"]:
        return Staleness(True, "the plans (or the nnunetv2 / suprem-nnunet version) changed")
    if old.get("dataset_json_sha256") != new["dataset_json_sha256"]:
        return Staleness(True, "the raw dataset.json changed")
    have = set(present)
    changed = [c for c, e in new["cases"].items() if old["cases"].get(c) != e or c not in have]
    removed = sorted(c for c in old["cases"] if c not in new["cases"])
    return Staleness(False, "", changed, removed,
                     old.get("annotated_classes_sha256") != new["annotated_classes_sha256"])
