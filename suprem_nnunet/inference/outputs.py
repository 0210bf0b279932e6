"""What a prediction writes besides the label map: class table, per-class masks, statistics, probabilities.

Every file is written under a temporary name in its folder, then renamed.

Probabilities (`--save-probabilities`) are one compressed `<case>.npz` per case holding
  * `probabilities`: float16 (classes, z, y, x), softmax over classes, channel 0 = background,
    on the network's grid (the input cropped and resampled to the model's spacing), array axes in
    SimpleITK's (z, y, x) order;
  * `class_names`: str (classes,), `class_ids`: int (classes,) the label id of each channel;
  * `spacing`, `origin` (x, y, z, mm) and `direction` (9 values, row-major) of that grid, so
    `img = sitk.GetImageFromArray(p[k]); img.SetSpacing(spacing); img.SetOrigin(origin);
    img.SetDirection(direction)` places channel k in physical space (resample it onto the input with
    `sitk.Resample(img, input_image, sitk.Transform(), sitk.sitkLinear)`);
  * `input_spacing`, `input_origin`, `input_direction`, `input_size` (x, y, z) of the input image.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..dataset.raw import atomic_write_bytes, atomic_write_json
from ..dataset.tumour_parts import split_by_part
from ..labels import PARTS, canonical, host_of
from ..errors import InputError

PathLike = Union[str, Path]


def write_class_table(folder: PathLike, class_ids: Mapping[str, int]) -> None:
    """`classes.json` ({name: id}, background 0) and `classes.csv` (id,name) next to the label maps."""
    folder = Path(folder)
    table = {"background": 0, **{n: int(i) for n, i in class_ids.items()}}
    atomic_write_json(folder / "classes.json", table)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "name"])
    for n, i in sorted(table.items(), key=lambda kv: kv[1]):
        w.writerow([i, n])
    atomic_write_bytes(folder / "classes.csv", buf.getvalue().encode())


def keep_classes(seg: np.ndarray, class_ids: Mapping[str, int]) -> np.ndarray:
    """`seg` with every label not in `class_ids` set to background (in place when possible)."""
    keep = np.zeros(int(max(int(seg.max()), *class_ids.values(), 0)) + 1, bool)
    keep[[int(i) for i in class_ids.values()]] = True
    seg[~keep[seg]] = 0
    return seg


def class_masks(arr: np.ndarray, class_ids: Mapping[str, int],
                spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> Dict[str, np.ndarray]:
    """{name: boolean mask}; an organ's mask includes the tumours it hosts (liver includes liver_tumor).
    A tumour hosted by a union organ (`kidney_cyst` by `kidney` = `kidney_left` + `kidney_right`) counts
    for the part it lies in, component by component (`dataset.tumour_parts.split_by_part`, the rule the
    evaluation uses); `arr` in (z, y, x) order, `spacing` in the same order."""
    canon = {canonical(n): int(i) for n, i in class_ids.items()}
    out = {}
    for name, lid in canon.items():
        mask = arr == lid
        for other, oid in canon.items():
            if host_of(other) == name:
                mask |= arr == oid
        out[name] = mask
    for union, parts in PARTS.items():
        present = [p for p in parts if p in canon]
        tumours = [oid for other, oid in canon.items() if host_of(other) == union]
        if not present or not tumours:
            continue
        shares = split_by_part(arr, tumours, [canon[p] for p in present], spacing)
        for part in present:
            out[part] |= shares[canon[part]]
    return out


def write_class_masks(seg_file: PathLike, class_ids: Mapping[str, int], folder: PathLike) -> List[Path]:
    """One binary uint8 mask per class {name: label id} in `folder/<class>.nii.gz`, same geometry as
    `seg_file`; organs include the voxels of the tumours they host."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(seg_file))
    arr = sitk.GetArrayFromImage(img)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, mask in class_masks(arr, class_ids, tuple(reversed(img.GetSpacing()))).items():
        m = sitk.GetImageFromArray(mask.astype(np.uint8))
        m.CopyInformation(img)
        tmp = folder / f".tmp-{os.getpid()}-{name}.nii.gz"
        sitk.WriteImage(m, str(tmp), useCompression=True)
        os.replace(tmp, folder / f"{name}.nii.gz")
        written.append(folder / f"{name}.nii.gz")
    return written


def class_statistics(seg: np.ndarray, image: np.ndarray, spacing: Sequence[float],
                     class_ids: Mapping[str, int]) -> List[Dict]:
    """One row per class: voxel count, volume (ml), mean and sd of the image (HU) over the class's
    voxels of the label map (exclusive labels: a tumour's voxels count for the tumour, not its organ)."""
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    flat, img = seg.ravel(), image.ravel().astype(np.float64)
    n_bins = int(max(int(flat.max(initial=0)), *class_ids.values(), 0)) + 1
    counts = np.bincount(flat, minlength=n_bins)
    sums = np.bincount(flat, weights=img, minlength=n_bins)
    sq = np.bincount(flat, weights=img * img, minlength=n_bins)
    rows = []
    for name, lid in class_ids.items():
        n = int(counts[lid])
        mean = sums[lid] / n if n else None
        sd = float(np.sqrt(max(sq[lid] / n - mean * mean, 0.0))) if n else None
        rows.append({"class": name, "id": int(lid), "voxels": n, "volume_ml": round(n * voxel_ml, 4),
                     "mean_hu": None if mean is None else round(float(mean), 3),
                     "sd_hu": None if sd is None else round(sd, 3)})
    return rows


def write_statistics(folder: PathLike, case: str, rows: Sequence[Dict]) -> List[Path]:
    """`<case>_statistics.json` ({class: row}) and `<case>_statistics.csv` (one row per class)."""
    folder = Path(folder)
    atomic_write_json(folder / f"{case}_statistics.json", {r["class"]: {k: v for k, v in r.items() if k != "class"}
                                                           for r in rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["class", "id", "voxels", "volume_ml", "mean_hu", "sd_hu"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    atomic_write_bytes(folder / f"{case}_statistics.csv", buf.getvalue().encode())
    return [folder / f"{case}_statistics.json", folder / f"{case}_statistics.csv"]


def write_probabilities(path: PathLike, probabilities: np.ndarray, class_names: Sequence[str],
                        class_ids: Sequence[int], geometry: Mapping, input_image=None) -> Path:
    """The compressed per-case probability file described in the module docstring."""
    path = Path(path)
    extra = {}
    if input_image is not None:
        extra = {"input_spacing": np.asarray(input_image.GetSpacing()), "input_origin": np.asarray(input_image.GetOrigin()),
                 "input_direction": np.asarray(input_image.GetDirection()), "input_size": np.asarray(input_image.GetSize())}
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # ends in .npz: numpy keeps the name
    np.savez_compressed(tmp, probabilities=probabilities.astype(np.float16, copy=False),
                        class_names=np.asarray(list(class_names)), class_ids=np.asarray(list(class_ids), np.int32),
                        spacing=np.asarray(geometry["spacing"], float), origin=np.asarray(geometry["origin"], float),
                        direction=np.asarray(geometry["direction"], float), **extra)
    os.replace(tmp, path)
    return path


def read_probabilities(path: PathLike) -> Dict[str, np.ndarray]:
    """The arrays of a probability file (see the module docstring)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def validate_roi(roi: Optional[Sequence[str]], class_names: Sequence[str], model: str) -> Optional[List[str]]:
    """ROI names as the model spells them (matched by canonical name), or ValueError naming the unknown ones."""
    if not roi:
        return None
    by_canon = {canonical(n): n for n in class_names}
    unknown = [r for r in roi if canonical(r) not in by_canon]
    if unknown:
        raise InputError(f"{model}: --roi-subset {', '.join(unknown)} not a class of this model "
                         f"(classes: {', '.join(class_names)})")
    return [by_canon[canonical(r)] for r in roi]
