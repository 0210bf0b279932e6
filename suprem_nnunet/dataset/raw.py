"""Write and read nnU-Net raw datasets (`DatasetNNN_Name/imagesTr|labelsTr|imagesTs|labelsTs`).

Every file is written under a temporary name and renamed, so an interrupted run never leaves a
half-written case. Besides nnU-Net's `dataset.json` a dataset carries `annotated_classes.json`:
for each case, the unified class names that were really annotated (others are unknown, not
background). Pre-training reads it to mask the loss of partially labelled cases.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from .. import paths
from ..labels import canonical, canonical_labels
from ..errors import InputError, MissingFileError

ANNOTATED_FILE = "annotated_classes.json"
PathLike = Union[str, Path]


def dataset_name(dataset_id: int, name: str) -> str:
    """'Dataset001_Name' from 1 and 'Name'; validates both."""
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"dataset id must be 1..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise InputError(f"dataset name {name!r} may only contain letters, digits, '_' and '-'")
    return f"Dataset{int(dataset_id):03d}_{name}"


def resolve_dataset(id_or_name: Union[int, str], root: Optional[Path] = None) -> str:
    """Full dataset folder name from an id ('3', 3), a name ('Phantom') or the full name."""
    root = Path(root) if root is not None else paths.raw_root()
    s = str(id_or_name)
    candidates = sorted(p.name for p in root.glob("Dataset*_*") if p.is_dir()) if root.is_dir() else []
    if s.isdigit():
        hits = [c for c in candidates if c.startswith(f"Dataset{int(s):03d}_")]
    else:
        hits = [c for c in candidates if c == s or c.split("_", 1)[1] == s]
    if len(hits) != 1:
        known = ", ".join(candidates) or "none"
        why = "no" if not hits else "several"
        raise MissingFileError(f"{why} dataset matches {s!r} in {root} (datasets there: {known})")
    return hits[0]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write `data` to a temporary name next to `path`, then rename; a failed write (full disk)
    leaves neither a temporary file nor a changed `path`."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: PathLike):
    """A JSON file; FileNotFoundError / ValueError naming it when it is missing or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def atomic_write_json(path: PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_figure(fig, path: PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG through a temporary name (`atomic_write_bytes`) and close it."""
    import io

    import matplotlib.pyplot as plt  # already imported by whoever drew `fig`

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def write_image(path: PathLike, array: np.ndarray, spacing: Sequence[float], origin: Sequence[float],
                direction: np.ndarray) -> None:
    """Write a (z, y, x) array with ITK geometry (spacing/origin in x, y, z; direction columns = axes)."""
    import SimpleITK as sitk

    path = Path(path)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing([float(v) for v in spacing])
    img.SetOrigin([float(v) for v in origin])
    img.SetDirection([float(v) for v in np.asarray(direction, float).flatten()])
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.stem.split('.')[0]}{suffix}")
    try:
        sitk.WriteImage(img, str(tmp), useCompression=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_dataset_json(folder: PathLike, labels: Sequence[str], num_training: int,
                       channel_names: Optional[Mapping[str, str]] = None, file_ending: str = ".nii.gz",
                       **extra) -> Dict:
    """Write nnU-Net's dataset.json; `labels` are class names in id order 1..N (unified names)."""
    names = canonical_labels(labels)
    d = {
        "channel_names": dict(channel_names or {"0": "CT"}),
        "labels": {"background": 0, **{n: i + 1 for i, n in enumerate(names)}},
        "numTraining": int(num_training),
        "file_ending": file_ending,
        **extra,
    }
    atomic_write_json(Path(folder) / "dataset.json", d)
    return d


def write_annotated_classes(folder: PathLike, annotated: Mapping[str, Iterable[str]]) -> None:
    """Record, per case id, which unified classes were really annotated."""
    atomic_write_json(Path(folder) / ANNOTATED_FILE,
                      {case: sorted(set(canonical_labels(set(names)))) for case, names in sorted(annotated.items())})


def dataset_classes(names: Iterable[str], labels: Sequence[str], where: str) -> List[str]:
    """The unified names of `names`, each of which must be a class of the dataset (`labels`: its
    dataset.json class names; synonyms match); ValueError '<where>: ...' naming the first that is
    not a class name at all or not one of the dataset's."""
    known = set(canonical_labels(labels))
    out = []
    for n in names:
        try:
            name = canonical(n)
        except ValueError as e:
            raise InputError(f"{where}: {e}") from None
        if name not in known:
            raise InputError(f"{where}: class {n!r} is not a label of the dataset.json ({', '.join(labels)})")
        out.append(name)
    return out


def read_annotated_classes(folder: PathLike, labels: Optional[Sequence[str]] = None,
                           cases: Optional[Iterable[str]] = None) -> Optional[Dict[str, List[str]]]:
    """{case id: [class names]} from a raw (or preprocessed) dataset folder, or None if absent.

    The file is validated: a JSON object of case id -> list of class names; with `labels` (the
    dataset.json class names) every listed class must be one of them, and with `cases` every one
    of those case ids must have an entry. Each problem raises ValueError naming the file and case.
    """
    p = Path(folder) / ANNOTATED_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected {{case id: [class names]}}")
    for case, names in data.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{p}: case {case}: expected a list of class names, got {names!r}")
    if labels is not None:
        for case, names in data.items():
            dataset_classes(names, labels, f"{p}: case {case}")
    if cases is not None:
        missing = [c for c in cases if str(c) not in data]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputError(f"{p}: no entry for case {missing[0]}{more}; every training case needs its "
                             "annotated classes")
    return data


def copy_annotated_classes(raw_folder: PathLike, preprocessed_folder: PathLike) -> Optional[Path]:
    """Copy `annotated_classes.json` (validated, atomically) from a raw dataset folder to its
    preprocessed folder, where training reads it; a stale copy goes when the raw folder has none.
    Returns the copy's path, or None."""
    src, dst = Path(raw_folder) / ANNOTATED_FILE, Path(preprocessed_folder) / ANNOTATED_FILE
    if not src.is_file():
        dst.unlink(missing_ok=True)
        return None
    ds_file = Path(raw_folder) / "dataset.json"
    labels = label_names(json.loads(ds_file.read_text())) if ds_file.is_file() else None
    read_annotated_classes(raw_folder, labels)
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst, src.read_bytes())
    return dst


def label_names(dataset_json: Mapping) -> List[str]:
    """Class names of a dataset.json in label-id order, background excluded."""
    labels = dataset_json["labels"]
    items = sorted(((int(v) if not isinstance(v, (list, tuple)) else int(v[0]), k) for k, v in labels.items()))
    if any(isinstance(v, (list, tuple)) for v in labels.values()):
        raise InputError("region-based dataset.json labels are not supported")
    ids = [i for i, _ in items]
    if ids != list(range(len(ids))):
        raise InputError(f"dataset.json labels must be consecutive from 0, got ids {ids}")
    return [k for i, k in items if i != 0]
