"""The segmentation-derived route: sub-type scores from a segmentation model's probabilities.

Fine-tune segmentation with the sub-types' lesions as novel classes (`suprem_synth`-style label
maps holding `pdac`, `pancreatic_cyst`, `pannet`; e.g. `make_subtype_dataset(label_as="subtype")` +
`suprem_finetune`), predict with `suprem_predict --save-probabilities`, then score every case
from its `<case>.npz` with this rule:

  score(k) = mean of the K largest voxel probabilities of sub-type k's class,
  K = the number of voxels in `volume_ml` (default 0.5 mL, at least 1) on the probability grid;
  score(none) = 1 - max over sub-types of score(k).

The top-K mean asks for a lesion-sized blob of confident voxels (one stray voxel does not make a
lesion) and does not grow with lesion size, so the sub-types' scores are comparable. The scores
need not sum to 1 (they are one-vs-rest scores); the prediction is the arg-max over all classes.
Class names are matched through `canonical_subtype` (`pancreatic_cyst` -> cyst, `pnet` -> pannet).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Union

import numpy as np

from .data import PANCREAS_LESION_SUBTYPES, SUBTYPES, canonical_subtype
from ..inference.outputs import read_probabilities
from ..dataset.raw import atomic_write_bytes
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
DEFAULT_VOLUME_ML = 0.5


def subtype_channels(class_names: List[str], source: str) -> Dict[str, int]:
    """{sub-type: probability channel} from a probability file's class names; ValueError when none."""
    found = {}
    for i, n in enumerate(class_names):
        k = canonical_subtype(str(n))
        if k in PANCREAS_LESION_SUBTYPES:
            found[k] = i
    if not found:
        raise InputError(f"{source}: no sub-type class among its channels ({', '.join(map(str, class_names))}); "
                         f"the segmentation route needs a model with classes {', '.join(PANCREAS_LESION_SUBTYPES)}")
    return found


def route_scores(probabilities: np.ndarray, channels: Dict[str, int], voxel_ml: float,
                 volume_ml: float = DEFAULT_VOLUME_ML) -> Dict[str, float]:
    """Scores of one case (classes, *spatial) under the rule in the module docstring."""
    k = max(1, int(round(volume_ml / max(voxel_ml, 1e-12))))
    out = {}
    for sub in PANCREAS_LESION_SUBTYPES:
        if sub in channels:
            flat = np.asarray(probabilities[channels[sub]], np.float32).ravel()
            kk = min(k, flat.size)
            out[sub] = float(np.partition(flat, flat.size - kk)[-kk:].mean())
    out["none"] = 1.0 - max(out.values())
    return out


def read_case_probabilities(path: Path) -> Dict[str, np.ndarray]:
    """The arrays of one probability file; ValueError (one line naming the file) when it is not a
    readable .npz, lacks `probabilities`, `class_names` or `spacing`, or names another number of
    classes than it has channels."""
    import zipfile


    try:
        z = read_probabilities(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: not a readable probability file ({str(e).splitlines()[0] if str(e) else e!r})") from None
    missing = [k for k in ("probabilities", "class_names", "spacing") if k not in z]
    if missing:
        what = "no class names (the 'class_names' array)" if missing == ["class_names"] else f"no {', '.join(missing)}"
        raise InputError(f"{path}: {what}; the segmentation route needs probability files as "
                         "suprem_predict --save-probabilities writes them")
    n_ch, n_names = int(np.asarray(z["probabilities"]).shape[0]), int(np.asarray(z["class_names"]).size)
    if n_ch != n_names:
        raise InputError(f"{path}: {n_names} class names for {n_ch} probability channels")
    return z


def scores_from_probabilities(folder: PathLike, output_csv: PathLike, volume_ml: float = DEFAULT_VOLUME_ML) -> Path:
    """scores.csv (as `suprem_classify predict` writes) from a folder of `<case>.npz` probability files;
    every file is checked before scores.csv is written (temporary file, then renamed)."""
    files = sorted(Path(folder).glob("*.npz"))
    if not files:
        raise MissingFileError(f"{folder}: no <case>.npz probability files (suprem_predict --save-probabilities)")
    rows, classes = [], None
    for f in files:
        z = read_case_probabilities(f)
        channels = subtype_channels([str(n) for n in z["class_names"]], str(f))
        voxel_ml = float(np.prod(z["spacing"])) / 1000.0
        s = route_scores(z["probabilities"], channels, voxel_ml, volume_ml)
        cls = [k for k in SUBTYPES if k in s]
        if classes is None:
            classes = cls
        elif cls != classes:
            raise InputError(f"{f}: sub-type classes {cls} differ from the other files' {classes}")
        rows.append(f"{f.name[:-4]}," + ",".join(f"{s[k]:.6f}" for k in classes) + f",{max(classes, key=s.get)}")
    text = "case," + ",".join(classes) + ",prediction\n" + "\n".join(rows) + "\n"
    atomic_write_bytes(Path(output_csv), text.encode())
    return Path(output_csv)
