"""PNG figures of the experiments: a metric against a sweep value per arm (error bars: sd over
trials), and learning curves. Drawn from numbers the report computed from results rows."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..dataset.raw import atomic_save_figure
from ..evaluation.figures import default_style, pyplot


def sweep_plot(series: Mapping[str, Sequence[Tuple[float, float, float]]], path: Path, xlabel: str, ylabel: str,
               title: str, log_x: bool = False, annotations: Optional[Mapping[str, Sequence[str]]] = None,
               reference: Optional[Tuple[str, float, float]] = None) -> None:
    """One line per arm through (x, mean, sd) points with sd error bars; optional text per point and a
    horizontal reference line (label, mean, sd)."""
    with default_style():
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm, pts in series.items():
            pts = sorted(pts)
            xs, ms, sds = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
            ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=3, label=arm)
            for (x, m, _), text in zip(pts, (annotations or {}).get(arm, [])):
                ax.annotate(text, (x, m), textcoords="offset points", xytext=(4, -12), fontsize=7)
        if reference is not None:
            label, m, sd = reference
            ax.axhline(m, color="grey", ls="--", label=label)
            ax.axhspan(m - sd, m + sd, color="grey", alpha=0.15)
        if log_x:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        atomic_save_figure(fig, path, dpi=120)


def curve_plot(curves: Mapping[str, List[Tuple[List[float], List[float]]]], path: Path, target: Optional[float],
               title: str, xlabel: str = "training time (s)", ylabel: str = "validation pseudo-DSC (EMA)") -> None:
    """Validation DSC against training seconds (or `xlabel`'s unit), one line per (arm, trial); dashed
    line at the target."""
    with default_style():
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        colors: Dict[str, str] = {}
        for i, (arm, runs) in enumerate(curves.items()):
            colors[arm] = f"C{i}"
            for j, (xs, ys) in enumerate(runs):
                ax.plot(xs, ys, color=colors[arm], alpha=0.8, label=arm if j == 0 else None)
        if target is not None:
            ax.axhline(target, color="grey", ls="--", label="scratch final (target)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        atomic_save_figure(fig, path, dpi=120)
