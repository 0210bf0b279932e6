"""PNG figures: per-class score bars of several arms, and a labelled CT slice; `pyplot()` and
`default_style()` are the helpers every figure writer of the package uses (experiments,
classification), and PNGs are written with `dataset.raw.atomic_save_figure`."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..dataset.raw import atomic_save_figure


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def default_style():
    """Matplotlib's default style, whatever a library set globally before (nnU-Net's progress plot
    calls seaborn.set(font_scale=2.5), which would otherwise leak into our figures)."""
    import matplotlib

    return matplotlib.rc_context(matplotlib.rcParamsDefault)


def score_bars(scores: Mapping[str, Mapping[str, float]], path: Path, metric: str = "DSC",
               title: str = "", novel: Sequence[str] = ()) -> None:
    """Grouped bars: {arm: {class: score}}; classes in `novel` are marked with '*'."""
    with default_style():
        _score_bars(pyplot(), scores, path, metric, title, novel)


def _score_bars(plt, scores, path, metric, title, novel) -> None:
    arms = list(scores)
    classes = list(next(iter(scores.values())))
    x = np.arange(len(classes))
    w = 0.8 / max(len(arms), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(classes) + 2), 4.2))
    for i, arm in enumerate(arms):
        vals = [scores[arm].get(c, np.nan) for c in classes]
        ax.bar(x + (i - (len(arms) - 1) / 2) * w, np.nan_to_num(vals), w, label=arm)
    ax.set_xticks(x)
    ax.set_xticklabels([c + (" *" if c in novel else "") for c in classes], rotation=35, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(metric)
    ax.set_title(title + ("   (* novel class)" if novel else ""))
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


def label_slices(ct: np.ndarray, segs: Dict[str, np.ndarray], class_names: List[str], path: Path,
                 z: Optional[int] = None, window=(-160, 240)) -> int:
    """Axial slice `z` (default: the one with most labelled voxels in the first seg) of `ct` with
    each label map in `segs` overlaid side by side. Arrays are (z, y, x). Returns the slice index."""
    with default_style():
        return _label_slices(pyplot(), ct, segs, class_names, path, z, window)


def _label_slices(plt, ct, segs, class_names, path, z, window) -> int:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    first = next(iter(segs.values()))
    if z is None:
        z = int(np.argmax([(first[k] > 0).sum() for k in range(first.shape[0])]))
    cmap = plt.get_cmap("tab20", max(len(class_names), 1))
    colors = ListedColormap([(0, 0, 0, 0)] + [cmap(i) for i in range(len(class_names))])
    fig, axes = plt.subplots(1, len(segs), figsize=(3.6 * len(segs), 4.2))
    axes = np.atleast_1d(axes)
    for ax, (title, seg) in zip(axes, segs.items()):
        ax.imshow(np.clip(ct[z], *window), cmap="gray", vmin=window[0], vmax=window[1])
        ax.imshow(seg[z], cmap=colors, vmin=0, vmax=len(class_names), alpha=0.55, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    handles = [Patch(color=cmap(i), label=n) for i, n in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(class_names)), fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    atomic_save_figure(fig, path, dpi=110)
    return z
