"""Check a raw nnU-Net dataset before nnU-Net reads it, with one-line errors naming the file.

nnU-Net's own integrity check stops on `assert`s inside worker processes (a traceback per worker),
and its fingerprint reader accepts truncated files and NaN voxels. `check_raw_dataset` looks at
every training case first: dataset.json, the files of each case, each image's header (whole, 3D,
one value per voxel, a sane voxel count), NaN / Inf voxels, label values and label geometry.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Union


from .image_checks import check_image_file, check_label_values, geometry_difference, rounded
from .raw import read_json
from ..errors import InputError, MissingFileError

PathLike = Union[str, Path]


def read_dataset_json(path: PathLike) -> Dict:
    """nnU-Net's dataset.json, checked for what every command needs: valid JSON, `labels` with
    integer ids (background 0), `channel_names`, `file_ending`. ValueError naming the file otherwise."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    for key in ("labels", "channel_names", "file_ending"):
        if key not in data:
            raise InputError(f"{path}: no {key!r} entry")
    labels = data["labels"]
    if not isinstance(labels, dict) or not labels or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise InputError(f"{path}: 'labels' must map class names to integer ids, got {labels!r}"[:300])
    if labels.get("background", 0) != 0 or 0 not in labels.values():
        raise InputError(f"{path}: 'labels' needs background with id 0")
    if not isinstance(data["channel_names"], dict) or not data["channel_names"]:
        raise InputError(f"{path}: 'channel_names' must be a non-empty object")
    return data


def _cases(folder: Path, ending: str, channels: int, what: str) -> Dict[str, List[Path]]:
    """{case: files} of an imagesTr (nnU-Net naming <case>_<NNNN>) or labelsTr folder (channels=0)."""
    out: Dict[str, List[Path]] = {}
    if not folder.is_dir():
        return out
    for f in sorted(folder.iterdir()):
        if not f.is_file() or not f.name.endswith(ending):
            continue  # stray files (notes, .DS_Store) are not read
        if f.name.startswith("."):
            raise InputError(f"{f}: hidden file (a macOS '._' fork?) that nnU-Net would read as a case; delete it")
        stem = f.name[: -len(ending)]
        if channels:
            m = re.fullmatch(r"(.+)_(\d{4})", stem)
            if m is None:
                raise InputError(f"{f}: {what} file names must end in _0000{ending} (nnU-Net channel naming)")
            if int(m[2]) >= channels:
                raise InputError(f"{f}: channel {m[2]} but dataset.json names {channels} channel(s)")
            out.setdefault(m[1], []).append(f)
        else:
            out[stem] = [f]
    return out


def _geometry(label, image, label_file: Path, image_file: Path) -> None:
    diff = geometry_difference(label, image, rtol=1e-5)
    if diff is not None:
        what, a, b = diff
        raise InputError(f"{label_file}: label {what} {rounded(a)} does not match image {image_file.name} {rounded(b)}")


def check_raw_dataset(folder: PathLike) -> Dict:
    """Check every training case of raw dataset `folder`; returns its dataset.json. Raises one-line
    ValueError / FileNotFoundError for the first problem found."""
    import SimpleITK as sitk

    folder = Path(folder)
    dj = read_dataset_json(folder / "dataset.json")
    ending, channels = dj["file_ending"], len(dj["channel_names"])
    images = _cases(folder / "imagesTr", ending, channels, "image")
    labels = _cases(folder / "labelsTr", ending, 0, "label")
    for case, files in labels.items():
        if case not in images:
            raise MissingFileError(f"{files[0]}: label without an image ({case}_0000{ending} in imagesTr)")
    for case, files in images.items():
        if case not in labels:
            raise MissingFileError(f"{files[0]}: image without a label ({case}{ending} in labelsTr)")
        if len(files) != channels:
            raise MissingFileError(f"{files[0]}: case {case} has {len(files)} of {channels} channel files")
    n = dj.get("numTraining")
    if n is not None and n != len(labels):
        raise InputError(f"{folder / 'dataset.json'}: numTraining is {n} but labelsTr holds {len(labels)} case(s)")
    ids = sorted(dj["labels"].values())
    for case in sorted(labels):
        heads = [check_image_file(f, "image", finite=True, volume=True) for f in images[case]]
        label_file = labels[case][0]
        check_image_file(label_file, "label map")
        label = sitk.ReadImage(str(label_file))
        for head, f in zip(heads, images[case]):
            _geometry(label, head, label_file, f)
        check_label_values(label_file, sitk.GetArrayViewFromImage(label), ids)
    return dj
