"""Probability files of several models (or TTA passes) for one case, matched by class name, on one grid.

A *set* is a folder of `<case>.npz` files written by `suprem_predict --save-probabilities` (format in
`inference.outputs`). The first set is the reference: its class order and network grid are used;
the other sets' channels are reordered by canonical class name, and resampled (linear, in physical
space) onto the reference grid when their grids differ. Sets whose class names differ: ValueError
naming both files and the classes in question.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..inference.outputs import read_probabilities
from ..labels import canonical, canonical_labels
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)
PathLike = Union[str, Path]


@dataclass
class CasePasses:
    """Softmax probabilities of M passes (models or TTA variants) of one case on one grid."""

    case: str
    passes: np.ndarray  # float16 (M, C, z, y, x), channel 0 = background
    class_names: List[str]  # foreground classes (canonical), channel i + 1
    spacing: np.ndarray  # x, y, z mm of the grid
    origin: np.ndarray
    direction: np.ndarray  # 9 values, row-major
    input_geometry: Optional[Dict[str, np.ndarray]]  # spacing, origin, direction, size of the CT, if stored
    sources: List[str]  # the files, one per pass

    def mean(self, channel: int) -> np.ndarray:
        """Mean probability over passes of one channel, float32."""
        return self.passes[:, channel].astype(np.float32).mean(0)

    def labels(self, p: int) -> np.ndarray:
        """Argmax label map of pass `p` (0 = background, i + 1 = class_names[i])."""
        return self.passes[p].argmax(0)

    def mean_labels(self) -> np.ndarray:
        """Argmax of the mean over passes."""
        return self.passes.astype(np.float32).mean(0).argmax(0)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


def list_sets(folders: Sequence[PathLike]) -> Dict[str, List[Path]]:
    """{case: [file of each set]} for the cases every set has; FileNotFoundError for a folder without
    probability files; cases missing from some set are left out with a warning."""
    per_set = []
    for f in folders:
        f = Path(f)
        if not f.is_dir():
            raise MissingFileError(f"{f}: no such folder of probability files")
        files = {p.name[: -len(".npz")]: p for p in sorted(f.glob("*.npz")) if not p.name.startswith(".")}
        if not files:
            raise MissingFileError(f"{f}: no <case>.npz probability files (write them with "
                                    "suprem_predict --save-probabilities)")
        per_set.append(files)
    common = sorted(set.intersection(*(set(s) for s in per_set)))
    dropped = sorted(set.union(*(set(s) for s in per_set)) - set(common))
    if dropped:
        log.warning("%d case(s) are not in every probability folder and are not scored: %s", len(dropped),
                    ", ".join(dropped[:10]))
    if not common:
        raise MissingFileError(f"no case has probabilities in all of {', '.join(map(str, folders))}")
    return {c: [s[c] for s in per_set] for c in common}


def _names(data: Dict[str, np.ndarray], path: Path) -> List[str]:
    if "class_names" not in data or "probabilities" not in data:
        raise InputError(f"{path}: not a probability file (needs probabilities and class_names)")
    names = [str(n) for n in data["class_names"]]
    if not names or names[0].lower() != "background" or data["probabilities"].shape[0] != len(names):
        raise InputError(f"{path}: expected class_names to start with 'background' and match the "
                         f"{data['probabilities'].shape[0]} probability channels")
    try:
        return [canonical(n) for n in names[1:]]
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None


def _same_grid(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> bool:
    return (a["probabilities"].shape[1:] == b["probabilities"].shape[1:]
            and np.allclose(a["spacing"], b["spacing"], atol=1e-4) and np.allclose(a["origin"], b["origin"], atol=1e-3)
            and np.allclose(a["direction"], b["direction"], atol=1e-4))


def _resample(probs: np.ndarray, src: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> np.ndarray:
    """`probs` (C, z, y, x) on `src`'s grid, linearly resampled onto `ref`'s grid and renormalised."""
    import SimpleITK as sitk

    shape = ref["probabilities"].shape[1:]
    reference = sitk.Image([int(n) for n in shape[::-1]], sitk.sitkFloat32)
    reference.SetSpacing([float(v) for v in ref["spacing"]])
    reference.SetOrigin([float(v) for v in ref["origin"]])
    reference.SetDirection([float(v) for v in ref["direction"]])
    out = np.zeros((probs.shape[0], *shape), np.float32)
    for k in range(probs.shape[0]):
        img = sitk.GetImageFromArray(probs[k].astype(np.float32))
        img.SetSpacing([float(v) for v in src["spacing"]])
        img.SetOrigin([float(v) for v in src["origin"]])
        img.SetDirection([float(v) for v in src["direction"]])
        out[k] = sitk.GetArrayFromImage(sitk.Resample(img, reference, sitk.Transform(), sitk.sitkLinear,
                                                      1.0 if k == 0 else 0.0))
    out /= np.maximum(out.sum(0, keepdims=True), 1e-6)
    return out


def _channels(f: Path) -> int:
    """The number of probability channels, from the `.npy` header inside the `.npz` (no decompression
    of the array)."""
    import zipfile

    with zipfile.ZipFile(f) as zf, zf.open("probabilities.npy") as fh:
        version = np.lib.format.read_magic(fh)
        shape = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                 else np.lib.format.read_array_header_2_0(fh))[0]
    if len(shape) != 4:
        raise InputError(f"{f}: probabilities have shape {shape}, expected (classes, z, y, x)")
    return int(shape[0])


def file_classes(f: PathLike) -> List[str]:
    """The canonical foreground class names of one probability file, checked against its channels:
    ValueError (one line naming the file) for a file that is not a probability file, has no (or
    unreadable) class names, names that do not start with 'background', a name count that is not the
    channel count, no foreground class, or two names of one class."""
    import zipfile

    f = Path(f)
    if not zipfile.is_zipfile(f):
        raise InputError(f"{f}: not a readable probability file (not an .npz archive)")
    try:
        with np.load(f, allow_pickle=False) as z:
            if "probabilities" not in z.files:
                raise InputError(f"{f}: not a probability file (no 'probabilities' array; write it with "
                                 "suprem_predict --save-probabilities)")
            if "class_names" not in z.files:
                raise InputError(f"{f}: probabilities without class names (no 'class_names' array; write it "
                                 "with suprem_predict --save-probabilities)")
            raw = z["class_names"]
        channels = _channels(f)
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise InputError(f"{f}: not a readable probability file ({type(e).__name__}: {e})") from None
    except ValueError as e:
        if str(e).startswith(str(f)):
            raise
        raise InputError(f"{f}: class_names cannot be read as text ({e})") from None
    if raw.dtype.kind not in "US" or raw.ndim != 1:
        raise InputError(f"{f}: class_names must be a list of names, got a {raw.dtype} array of shape {raw.shape}")
    names = [str(n) for n in raw]
    if not names or names[0].lower() != "background":
        raise InputError(f"{f}: expected class_names to start with 'background', got "
                         f"{', '.join(names[:4]) or 'none'}")
    if len(names) != channels:
        raise InputError(f"{f}: {len(names)} class_names for {channels} probability channels")
    if len(names) < 2:
        raise InputError(f"{f}: no foreground class (class_names holds only 'background')")
    try:
        return canonical_labels(names[1:])
    except ValueError as e:
        raise InputError(f"{f}: {e}") from None


def check_classes(sets: Dict[str, List[Path]]) -> None:
    """ValueError (one line naming the file) for the first file whose class names are missing or
    broken (`file_classes`) and for the first case whose sets name different classes (both files);
    reads only the names and the array header, so a whole run can be refused before anything is
    written."""
    for case, files in sets.items():
        ref = None
        for f in files:
            canon = file_classes(f)
            if ref is None:
                ref = (f, canon)
            elif sorted(canon) != sorted(ref[1]):
                _differ(f, canon, ref[0], ref[1])


def _differ(f: Path, names: List[str], ref_file: Path, ref_names: List[str]) -> None:
    missing, extra = sorted(set(ref_names) - set(names)), sorted(set(names) - set(ref_names))
    raise InputError(f"{f}: classes differ from {ref_file} (missing: {', '.join(missing) or 'none'}; "
                     f"extra: {', '.join(extra) or 'none'}); the models must predict the same classes")


def load_case(case: str, files: Sequence[PathLike]) -> CasePasses:
    """The passes of one case from one file per set (see the module docstring)."""
    files = [Path(f) for f in files]
    ref = read_probabilities(files[0])
    ref_names = _names(ref, files[0])
    stack = [ref["probabilities"]]
    for f in files[1:]:
        d = read_probabilities(f)
        names = _names(d, f)
        if sorted(names) != sorted(ref_names):
            _differ(f, names, files[0], ref_names)
        order = [0] + [names.index(n) + 1 for n in ref_names]
        p = d["probabilities"][order]
        if not _same_grid(d, ref):
            p = _resample(p, d, ref).astype(np.float16)
        stack.append(p)
    geo = None
    if "input_size" in ref:
        geo = {k: np.asarray(ref[f"input_{k}"]) for k in ("spacing", "origin", "direction", "size")}
    return CasePasses(case, np.stack(stack), ref_names, np.asarray(ref["spacing"], float),
                      np.asarray(ref["origin"], float), np.asarray(ref["direction"], float), geo,
                      [str(f) for f in files])
