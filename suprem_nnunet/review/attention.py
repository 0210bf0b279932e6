"""The voxel attention map (NIfTI over the CT) and a preview PNG of its top region.

attention(v) = max over classes c of max(H(p̄_c(v)), min(1, 2·sd_c(v)), overlap_c(v)), where H is
the binary entropy (bits) of the mean probability, sd the standard deviation over passes (0 with one
pass) and overlap_c(v) = 1 when c and another class both claim v (p̄ > 0.3). Values lie in [0, 1].
The map is resampled (linear) from the network grid onto the CT's grid when the probability file
stores the input geometry, so it opens over the CT in 3D Slicer / ITK-SNAP as a float volume.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

from ..dataset.raw import atomic_save_figure
from .probabilities import CasePasses
from .scorers import CLAIM, binary_entropy
from ..inference.preview import WINDOW
from ..dataset.cases import IMAGE_ENDINGS

PathLike = Union[str, Path]


def attention_map(case: CasePasses) -> np.ndarray:
    """The attention map on the case's grid (z, y, x), float32 in [0, 1]."""
    m = case.passes.shape[0]
    means = [case.mean(i + 1) for i in range(len(case.class_names))]
    n_claims = np.sum([p > CLAIM for p in means], 0) if means else 0
    att = np.zeros(case.passes.shape[2:], np.float32)
    for i, p in enumerate(means):
        a = binary_entropy(p)
        if m > 1:
            a = np.maximum(a, np.minimum(1.0, 2.0 * case.passes[:, i + 1].astype(np.float32).std(0)))
        a = np.maximum(a, ((p > CLAIM) & (n_claims > 1)).astype(np.float32))
        att = np.maximum(att, a)
    return att


def _grid_image(arr: np.ndarray, spacing, origin, direction):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing([float(v) for v in spacing])
    img.SetOrigin([float(v) for v in origin])
    img.SetDirection([float(v) for v in np.asarray(direction, float).ravel()])
    return img


def attention_image(case: CasePasses, att: np.ndarray, reference=None):
    """SimpleITK image of `att`: on `reference`'s grid (a SimpleITK image) if given, else on the CT's
    grid stored in the probability file, else on the network grid."""
    import SimpleITK as sitk

    img = _grid_image(att, case.spacing, case.origin, case.direction)
    if reference is None and case.input_geometry is not None:
        g = case.input_geometry
        reference = sitk.Image([int(v) for v in g["size"]], sitk.sitkFloat32)
        reference.SetSpacing([float(v) for v in g["spacing"]])
        reference.SetOrigin([float(v) for v in g["origin"]])
        reference.SetDirection([float(v) for v in g["direction"]])
    if reference is None:
        return img
    return sitk.Resample(img, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def write_attention(case: CasePasses, path: PathLike, reference=None) -> Tuple[Path, object]:
    """Write the attention NIfTI (temp name, then renamed); returns (path, the SimpleITK image)."""
    import SimpleITK as sitk

    path = Path(path)
    img = attention_image(case, attention_map(case), reference)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    sitk.WriteImage(img, str(tmp), useCompression=True)
    os.replace(tmp, path)
    return path, img


def write_attention_preview(attention, path: PathLike, ct=None, title: str = "",
                            top_classes: Sequence[Tuple[str, float]] = ()) -> Path:
    """PNG: axial, coronal and sagittal slices through the top region (the maximum of the smoothed
    attention) of `attention` (SimpleITK image), over `ct` (SimpleITK image on the same grid) if given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import SimpleITK as sitk


    att_lps = sitk.DICOMOrient(attention, "LPS")
    att = sitk.GetArrayFromImage(att_lps)
    sx, sy, sz = att_lps.GetSpacing()
    img = sitk.GetArrayFromImage(sitk.DICOMOrient(ct, "LPS")).astype(np.float32) if ct is not None else None
    if img is not None and img.shape != att.shape:
        img = None
    smooth = ndimage.uniform_filter(att, size=5)
    cz, cy, cx = np.unravel_index(int(np.argmax(smooth)), att.shape)
    views = [("axial", (cz, slice(None), slice(None)), sy / sx, False),
             ("coronal", (slice(None), cy, slice(None)), sz / sx, True),
             ("sagittal", (slice(None), slice(None), cx), sz / sy, True)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, (name, sl, aspect, flip) in zip(axes, views):
        a = att[sl][::-1] if flip else att[sl]
        if img is not None:
            im = img[sl][::-1] if flip else img[sl]
            ax.imshow(np.clip(im, *WINDOW), cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect,
                      interpolation="nearest")
            ax.imshow(np.ma.masked_less(a, 0.05), cmap="hot", vmin=0, vmax=1, alpha=0.6, aspect=aspect,
                      interpolation="nearest")
        else:
            ax.imshow(a, cmap="hot", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    text = ", ".join(f"{c} {s:.2f}" for c, s in top_classes)
    fig.suptitle(f"{title}  attention (top: {text})" if text else f"{title}  attention")
    fig.tight_layout()
    return atomic_save_figure(fig, path, dpi=80)


def find_ct(images: Optional[PathLike], case: str) -> Optional[Path]:
    """`<case>_0000.<ending>` or `<case>.<ending>` in the images folder, or None."""
    if images is None:
        return None
    for stem in (f"{case}_0000", case):
        for end in IMAGE_ENDINGS:
            p = Path(images) / f"{stem}{end}"
            if p.is_file():
                return p
    return None
