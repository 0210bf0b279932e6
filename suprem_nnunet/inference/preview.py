"""A PNG preview of a prediction: axial, coronal and sagittal slices with the label map overlaid and a legend.

Slices go through the centre of the predicted foreground (the volume centre when it is empty), in
radiological display (patient right on the image's left, head up), with each voxel's true aspect.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

import numpy as np

from ..dataset.raw import atomic_save_figure

PathLike = Union[str, Path]
WINDOW = (-160.0, 240.0)  # HU, a soft-tissue window


def _colors(n: int) -> np.ndarray:
    import matplotlib

    base = [matplotlib.colormaps[name](np.linspace(0, 1, 20 if name == "tab20" else 8, endpoint=False))
            for name in ("tab20", "Set2", "Dark2")]
    table = np.concatenate(base)
    return table[np.arange(n) % len(table)]


def write_preview(image, seg, class_ids: Mapping[str, int], path: PathLike, title: str = "") -> Path:
    """Write the preview PNG of `seg` (SimpleITK label image) over `image` (SimpleITK CT) to `path`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import SimpleITK as sitk
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    img = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS")).astype(np.float32)  # (z: I->S, y: A->P, x: R->L)
    lab = sitk.GetArrayFromImage(sitk.DICOMOrient(seg, "LPS"))
    sx, sy, sz = sitk.DICOMOrient(image, "LPS").GetSpacing()
    fg = np.argwhere(lab > 0)
    cz, cy, cx = (fg.mean(0) if len(fg) else np.array(lab.shape) / 2).astype(int)
    ids = sorted({int(i) for i in class_ids.values()})
    colors = _colors(len(ids))
    lut = np.zeros(int(max(ids + [int(lab.max())])) + 1, int)
    for k, i in enumerate(ids):
        lut[i] = k + 1
    cmap = ListedColormap(np.vstack([[0, 0, 0, 0], colors]))
    views = [("axial", img[cz], lab[cz], sy / sx),
             ("coronal", img[:, cy][::-1], lab[:, cy][::-1], sz / sx),
             ("sagittal", img[:, :, cx][::-1], lab[:, :, cx][::-1], sz / sy)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1, 1, 1, 0.55]})
    for ax, (name, im, lb, aspect) in zip(axes, views):
        ax.imshow(np.clip(im, *WINDOW), cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect,
                  interpolation="nearest")
        shown = np.ma.masked_equal(lut[lb], 0)
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=len(ids), alpha=0.5, aspect=aspect, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    present = set(np.unique(lab).tolist())
    handles = [Patch(color=colors[k], label=f"{i} {n}" + ("" if i in present else " (none)"))
               for k, (n, i) in enumerate(sorted(class_ids.items(), key=lambda kv: kv[1]))]
    axes[3].axis("off")
    axes[3].legend(handles=handles, loc="center left", fontsize=8, frameon=False,
                   ncol=1 if len(handles) <= 24 else 2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_save_figure(fig, path, dpi=90)
