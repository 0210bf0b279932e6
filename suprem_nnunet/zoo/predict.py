"""The paper's direct-inference protocol for released models (Table 3), in three layers.

array:  `preprocess_ct` (RAS, 1.5 mm, clip [-175, 250] HU -> [0, 1]) -> `predict_masks` (sliding window,
        overlap 0.75, Gaussian blending, sigmoid > 0.5, largest connected component per organ)
        -> `compose_label_map` (one multi-label map, tumours painted over their organs)
file:   `predict_released(model, input.nii.gz, output.nii.gz)`: the label map resampled (nearest) back
        onto the input's exact grid, ids = unified AbdomenAtlas ids, names in a JSON sidecar.

Resampling uses SimpleITK (linear for the image), not MONAI's Spacingd: grids agree to within the
sub-voxel placement of the resampled grid.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage
from torch import nn

from ..dataset.raw import atomic_write_bytes
from ..labels import BY_NAME, atlas_id
from ..planning.presets import load_preset
from .release import load_released
from ..errors import InputError

log = logging.getLogger(__name__)
PathLike = Union[str, Path]

SUPREM_PREPROCESSING = {"orientation": "RAS", "spacing": [1.5, 1.5, 1.5],
                        "intensity": {"clip": [-175.0, 250.0], "scale_to": [0.0, 1.0]}}


def preprocess_ct(image: sitk.Image, preset: Optional[Dict] = None) -> Tuple[np.ndarray, sitk.Image]:
    """(float32 array with axes (x, y, z) along R, A, S at the preset spacing, its SimpleITK grid).

    Voxel (0, 0, 0) keeps its centre (as MONAI's Spacingd places the grid); the array is clipped to the
    preset's HU window and scaled linearly to its target range.
    """
    preset = preset or SUPREM_PREPROCESSING
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D image, got {image.GetDimension()}D")
    ras = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkFloat32), preset.get("orientation", "RAS"))
    new_spacing = [float(s) for s in preset["spacing"]]
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(ras.GetSize(), ras.GetSpacing(), new_spacing)]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing(new_spacing)
    ref.SetOrigin(ras.GetOrigin())
    ref.SetDirection(ras.GetDirection())
    lo, hi = preset["intensity"]["clip"]
    b_lo, b_hi = preset["intensity"].get("scale_to", [0.0, 1.0])
    # beyond the last input voxel the border value repeats (MONAI Spacingd's padding_mode="border"): one
    # replicated voxel past the far end of each axis covers the new grid's extent
    padded = sitk.ZeroFluxNeumannPad(ras, (0, 0, 0), (1, 1, 1))
    resampled = sitk.Resample(padded, ref, sitk.Transform(), sitk.sitkLinear, float(lo), sitk.sitkFloat32, True)
    arr = sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)
    arr = (np.clip(arr, lo, hi) - lo) / (hi - lo) * (b_hi - b_lo) + b_lo
    return np.ascontiguousarray(arr, dtype=np.float32), resampled


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (empty stays empty)."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def is_tumor(name: str) -> bool:
    c = BY_NAME.get(name)
    return c is not None and c.group == "tumor"


def predict_masks(model: nn.Module, volume: np.ndarray, class_names: Sequence[str],
                  roi_size: Sequence[int] = (96, 96, 96), overlap: float = 0.75, threshold: float = 0.5,
                  sw_batch_size: int = 1, mode: str = "gaussian", keep_largest: bool = True,
                  device: Union[str, torch.device] = "cpu") -> np.ndarray:
    """Boolean masks (K, x, y, z): sliding window, sigmoid > threshold, largest component per organ.

    Tumour classes keep every component (lesions are often several).
    """
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(volume)[None, None].to(device)
    with torch.no_grad():
        logits = sliding_window_inference(x, tuple(int(r) for r in roi_size), sw_batch_size, model,
                                          overlap=overlap, mode=mode)
    if logits.shape[1] != len(class_names):
        raise InputError(f"model gives {logits.shape[1]} channels but {len(class_names)} class names")
    masks = (torch.sigmoid(logits[0].float()) > threshold).cpu().numpy()
    if keep_largest:
        for k, name in enumerate(class_names):
            if masks[k].any() and not is_tumor(name):
                masks[k] = largest_component(masks[k])
    return masks


def label_ids(class_names: Sequence[str]) -> List[int]:
    """Output id of each class: its unified AbdomenAtlas id, else the next free id after them."""
    ids = [atlas_id(n) if n in BY_NAME else None for n in class_names]
    nxt = max((i for i in ids if i is not None), default=0) + 1
    out = []
    for i in ids:
        if i is None:
            i, nxt = nxt, nxt + 1
        out.append(i)
    return out


def compose_label_map(masks: np.ndarray, class_names: Sequence[str]) -> Tuple[np.ndarray, Dict[str, int]]:
    """One uint8 map from overlapping masks: organs by ascending id, then tumours on top."""
    ids = label_ids(class_names)
    order = sorted(range(len(class_names)), key=lambda k: (is_tumor(class_names[k]), ids[k]))
    out = np.zeros(masks.shape[1:], np.uint8)
    for k in order:
        out[masks[k]] = ids[k]
    return out, {class_names[k]: ids[k] for k in range(len(class_names))}


def predict_released(model: Union[nn.Module, PathLike], input_file: PathLike, output_file: PathLike,
                     class_names: Optional[Sequence[str]] = None, preset: Optional[Dict] = None,
                     overlap: Optional[float] = None, threshold: Optional[float] = None,
                     roi_size: Optional[Sequence[int]] = None, keep_largest: bool = True,
                     sw_batch_size: int = 1, device: Union[str, torch.device] = "cpu") -> Dict[str, int]:
    """Segment `input_file` (CT in HU) with a released model; write a multi-label NIfTI.

    `model` is a network from `load_released` (or a path / zoo name handed to it). The output has
    the input's exact size, spacing, origin and direction; a sidecar ``<output>.json`` maps unified
    class names to label ids. Defaults come from the backbone's SuPreM preset (direct_inference).
    Returns {class name: label id}.
    """

    if not isinstance(model, nn.Module):
        model = load_released(model, map_location=device)
    if preset is None:
        backbone = getattr(model, "backbone_name", None)
        preset = load_preset(backbone) if backbone else dict(SUPREM_PREPROCESSING)
    di = preset.get("direct_inference", {})
    names = list(class_names or getattr(model, "class_names", []) or [])
    if not names:
        raise InputError("class names unknown: pass class_names or use a model from load_released")
    src = Path(input_file)
    try:
        image = sitk.ReadImage(str(src))
    except RuntimeError as e:
        raise InputError(f"{src}: cannot read image ({str(e).strip().splitlines()[-1]})") from None
    volume, grid = preprocess_ct(image, preset)
    model = model.to(device).eval()
    overlap = di.get("overlap", 0.75) if overlap is None else overlap
    threshold = di.get("threshold", 0.5) if threshold is None else threshold
    masks = predict_masks(model, volume, names, roi_size or preset.get("patch_size", (96, 96, 96)), overlap,
                          threshold, sw_batch_size, di.get("mode", "gaussian"), keep_largest, device)
    labels, mapping = compose_label_map(masks, names)
    lab_img = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    lab_img.CopyInformation(grid)
    out_img = sitk.Resample(lab_img, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    out = Path(output_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")  # no half-written prediction under the final name
    try:
        sitk.WriteImage(out_img, str(tmp), True)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    sidecar = out.with_name(out.name.split(".")[0] + ".json")
    protocol = {"overlap": overlap, "threshold": threshold, "largest_component": keep_largest,
                "spacing": preset["spacing"], "clip": preset["intensity"]["clip"]}
    atomic_write_bytes(sidecar, json.dumps({"labels": mapping, "source_model": getattr(model, "source", None),
                                            "protocol": protocol}, indent=1).encode())
    log.info("%s -> %s (%d classes)", src, out, len(names))
    return mapping
