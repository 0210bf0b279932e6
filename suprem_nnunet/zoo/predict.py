"""The paper's direct-inference protocol for released models (Table 3), in three layers.

array:  `preprocess_ct` (RAS, 1.5 mm, clip [-175, 250] HU -> [0, 1]) -> `predict_masks` (sliding window,
        overlap 0.75, Gaussian blending, sigmoid > 0.5, largest connected component per organ)
        -> `compose_label_map` (one multi-label map, tumours painted over their organs)
file:   `predict_released(model, input.nii.gz, output.nii.gz)`: the label map resampled (nearest) back
        onto the input's exact grid, ids = unified AbdomenAtlas ids, names in a JSON sidecar. With
        `roi_names`, a coarse pass locates those classes and the windows run on the box around
        them (`coarse_roi_box`, `cut_short`: the fast ROI of `inference.fast_roi`, for released models).

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


#: the ROI's coarse pass runs at this times the preset's spacing (as `inference.fast_roi`)
ROI_COARSE_FACTOR = 3.0
#: the coarse ROI box is grown by this many mm on every side before the windows run on it
ROI_MARGIN_MM = 20.0
#: ROI voxels of the fine pass this close (grid voxels) to an inner face of the box: an organ cut short
ROI_EDGE_VOXELS = 2

GridBox = Tuple[slice, slice, slice]  # array axes (x, y, z) of `preprocess_ct`'s grid


def segment_image(model: nn.Module, image: sitk.Image, names: Sequence[str], preset: Dict, roi_size: Sequence[int],
                  overlap: float, threshold: float, keep_largest: bool, sw_batch_size: int, mode: str,
                  device: Union[str, torch.device], roi_names: Optional[Sequence[str]] = None,
                  roi_box: Optional[GridBox] = None) -> Tuple[sitk.Image, Dict[str, int], Optional[GridBox]]:
    """The protocol on one SimpleITK image: (its uint8 label map on the image's own grid, {name: id}, the
    box of the preset's grid the windows ran on, None for all of it).

    `roi_names`: the windows run only on the box of the preset's grid that `coarse_roi_box` finds around
    those classes (outside it every mask is empty): the grid, its resampling and the label export are the
    whole image's, only the windows (and so the context a window sees) differ. The whole grid runs
    (logged) when the coarse pass finds none of them or an ROI organ reaches an inner face of the box.
    `roi_box`: that box given (e.g. by a benchmark whose weights find no organ), no coarse pass, no edge
    check."""
    volume, grid = preprocess_ct(image, preset)
    run = dict(roi_size=roi_size, overlap=overlap, threshold=threshold, sw_batch_size=sw_batch_size, mode=mode,
               keep_largest=keep_largest, device=device)
    masks, box = None, roi_box
    if box is None and roi_names:
        box = coarse_roi_box(model, image, grid, names, roi_names, preset, roi_size, threshold, sw_batch_size,
                             mode, device)
        if box is None:
            log.info("fast ROI: the coarse pass found none of %s; running on the whole image", ", ".join(roi_names))
    if box is not None:
        inside = predict_masks(model, np.ascontiguousarray(volume[box]), names, **run)
        reason = None if roi_box is not None else cut_short(inside, [list(names).index(n) for n in roi_names], box,
                                                             volume.shape)
        if reason:
            log.info("fast ROI: %s; running on the whole image", reason)
            box = None
        else:
            masks = np.zeros((len(names), *volume.shape), bool)
            masks[(slice(None), *box)] = inside
            log.info("fast ROI: windows on %s of %s grid voxels", [b.stop - b.start for b in box],
                     list(volume.shape))
    if masks is None:
        masks = predict_masks(model, volume, names, **run)
    labels, mapping = compose_label_map(masks, names)
    lab_img = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    lab_img.CopyInformation(grid)
    out = sitk.Resample(lab_img, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return out, mapping, box


def coarse_roi_box(model: nn.Module, image: sitk.Image, grid: sitk.Image, names: Sequence[str],
                   roi_names: Sequence[str], preset: Dict, roi_size: Sequence[int], threshold: float,
                   sw_batch_size: int, mode: str, device: Union[str, torch.device],
                   coarse_factor: float = ROI_COARSE_FACTOR, margin_mm: float = ROI_MARGIN_MM) -> Optional[GridBox]:
    """The box of `grid` (x, y, z) around the ROI classes that the protocol finds at `coarse_factor` times the
    preset's spacing (overlap 0.25, largest component per organ), grown by `margin_mm`; None when the coarse
    pass finds none of them. The coarse image is the same network's input at a coarser spacing: each
    window sees `coarse_factor`^3 times the volume."""
    coarse_preset = {**preset, "spacing": [float(v) * coarse_factor for v in preset["spacing"]]}
    volume, coarse = preprocess_ct(image, coarse_preset)
    masks = predict_masks(model, volume, names, roi_size, 0.25, threshold, sw_batch_size, mode, True, device)
    found = np.zeros(volume.shape, bool)
    for n in roi_names:
        found |= masks[list(names).index(n)]
    if not found.any():
        return None
    where = np.argwhere(found)
    lo, hi = where.min(0) - 0.5, where.max(0) + 0.5  # the faces of the outermost coarse voxels
    corners = np.array([grid.TransformPhysicalPointToContinuousIndex(
        coarse.TransformContinuousIndexToPhysicalPoint([float(x), float(y), float(z)]))
        for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return grown_box(corners.min(0), corners.max(0), grid, margin_mm)


def grown_box(lo: Sequence[float], hi: Sequence[float], grid: sitk.Image, margin_mm: float) -> GridBox:
    """The box of `grid` (x, y, z) from continuous index `lo` to `hi`, grown by `margin_mm` on every side and
    kept inside the grid (at least one voxel per axis)."""
    box = []
    for a, n in enumerate(grid.GetSize()):
        grow = margin_mm / grid.GetSpacing()[a]
        start = min(n - 1, max(0, int(np.floor(lo[a] - grow))))
        box.append(slice(start, max(start + 1, min(n, int(np.ceil(hi[a] + grow)) + 1))))
    return tuple(box)


def cut_short(masks: np.ndarray, roi_channels: Sequence[int], box: GridBox, shape: Sequence[int]) -> Optional[str]:
    """Why `box` may have cut an ROI organ short (a mask of `roi_channels`, (K, x, y, z) on the box, within
    ROI_EDGE_VOXELS of a face of the box that is not the grid's border), or None."""
    roi = masks[list(roi_channels)].any(0)
    for a in range(3):
        n = roi.shape[a]
        lo = np.take(roi, range(min(ROI_EDGE_VOXELS, n)), axis=a).any()
        hi = np.take(roi, range(max(0, n - ROI_EDGE_VOXELS), n), axis=a).any()
        if (box[a].start > 0 and lo) or (box[a].stop < shape[a] and hi):
            return f"the ROI reaches the edge of the box along axis {'xyz'[a]}"
    return None


def predict_released(model: Union[nn.Module, PathLike], input_file: PathLike, output_file: PathLike,
                     class_names: Optional[Sequence[str]] = None, preset: Optional[Dict] = None,
                     overlap: Optional[float] = None, threshold: Optional[float] = None,
                     roi_size: Optional[Sequence[int]] = None, keep_largest: bool = True,
                     sw_batch_size: int = 1, device: Union[str, torch.device] = "cpu",
                     roi_names: Optional[Sequence[str]] = None, runner: Optional[nn.Module] = None,
                     roi_box: Optional[GridBox] = None) -> Dict[str, int]:
    """Segment `input_file` (CT in HU) with a released model; write a multi-label NIfTI.

    `model` is a network from `load_released` (or a path / zoo name handed to it). The output has
    the input's exact size, spacing, origin and direction; a sidecar ``<output>.json`` maps unified
    class names to label ids. Defaults come from the backbone's SuPreM preset (direct_inference).
    `roi_names`: the fast ROI (as `inference.fast_roi` for our models): a coarse pass of the protocol at
    ROI_COARSE_FACTOR times the spacing locates those classes, and the windows run only on their box
    + ROI_MARGIN_MM of the 1.5 mm grid (`segment_image`); outside it the map is background. The
    sidecar's `roi_box_xyz` gives the box (null: the whole grid ran). `runner`: what runs the windows in
    place of `model` (e.g. `inference.backends`' wrapper of it); `model` still gives the names, preset
    and source. `roi_box`: see `segment_image`. Returns {class name: label id}.
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
    unknown = [n for n in roi_names or () if n not in names]
    if unknown:
        raise InputError(f"ROI classes {', '.join(unknown)} are not among the model's classes")
    src = Path(input_file)
    try:
        image = sitk.ReadImage(str(src))
    except RuntimeError as e:
        raise InputError(f"{src}: cannot read image ({str(e).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3:
        raise InputError(f"{src}: expected a 3D image, got {image.GetDimension()}D")
    net = (runner if runner is not None else model).to(device).eval()
    overlap = di.get("overlap", 0.75) if overlap is None else overlap
    threshold = di.get("threshold", 0.5) if threshold is None else threshold
    patch = tuple(int(r) for r in (roi_size or preset.get("patch_size", (96, 96, 96))))
    mode = di.get("mode", "gaussian")
    out_img, mapping, box = segment_image(net, image, names, preset, patch, overlap, threshold, keep_largest,
                                          sw_batch_size, mode, device, roi_names=roi_names, roi_box=roi_box)
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
                "spacing": preset["spacing"], "clip": preset["intensity"]["clip"],
                "roi_box_xyz": None if box is None else [[b.start, b.stop] for b in box],
                "network": runner.provenance() if hasattr(runner, "provenance") else {"backend": "torch"}}
    atomic_write_bytes(sidecar, json.dumps({"labels": mapping, "source_model": getattr(model, "source", None),
                                            "protocol": protocol}, indent=1).encode())
    log.info("%s -> %s (%d classes)", src, out, len(names))
    return mapping
