"""`python -m suprem_nnunet.benchmarks roi`: the fast `--roi-subset` against the full window, side by side.

One process, one trained model, one CT: a small PlainConvUNet trained on band phantoms
(`benchmarks.trained_reference.train_band_unet`, trained at the start of the run) predicts a
512x512xN band phantom with `roi_labels` set, once with the full sliding window (`SupremPredictor`,
what `--roi-subset --roi-full` runs) and once with the coarse pass + the run on the input cropped to
the ROI (`FastRoiPredictor`, what `--roi-subset` runs). Both are warmed up on a small phantom first;
the timed runs alternate (full, fast, full, fast, ...) so that a shared machine's slow phases hit
both; times are medians.
Printed (one JSON object): time ratio fast / full, windows of each pass, per-class DSC of the ROI
classes between the two outputs and of each against the phantom's labels.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .predict import dice_per_class, temp_folder
from ..inference.outputs import keep_classes
from ..inference.predict import make_predictor
from .reference_nets import band_phantom
from .trained_reference import train_band_unet

log = logging.getLogger(__name__)

#: the phantom's organs in label order (band_phantom: organ k at 20 + hu_step * (k - 1) HU)
NAMES = ["liver", "spleen", "kidney_left", "kidney_right", "aorta", "stomach", "pancreas", "gall_bladder"]


def _phantom(folder: Path, shape_zyx: Sequence[int], hu_step: float, spacing_xyz=(0.8, 0.8, 1.0)):
    import SimpleITK as sitk

    hu, labels = band_phantom(shape_zyx, len(NAMES) + 1, hu_step=hu_step, seed=0)
    f = folder / f"phantom_{'x'.join(map(str, shape_zyx))}.nii.gz"
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(spacing_xyz)
    sitk.WriteImage(img, str(f))
    return f, labels


#: training budget of the benchmark's model: iterations, its training patch and the size of its training
#: phantoms (at 1.5 mm), big enough that the organs are a few patches wide. A 16^3 patch is mostly
#: zero-padded border for this network, which then learns the border: on the 64^3 windows of the
#: 512x512xN phantom it called spleen kidney_left (spleen DSC 0.16); trained on 32^3 it gets liver and
#: spleen right.
TRAIN_ITERATIONS = 1500
TRAIN_PATCH = 32
TRAIN_SHAPE_ZYX = (64, 96, 96)


def bench_roi(slices: int = 300, size: int = 512, roi: Sequence[str] = ("liver", "spleen"), repeat: int = 3,
              iterations: int = TRAIN_ITERATIONS, patch: int = 64, hu_step: float = 60.0,
              folder: Optional[Path] = None) -> Dict:
    """The side-by-side run described in the module doc; returns its row."""
    unknown = [r for r in roi if r not in NAMES]
    if unknown:
        raise ValueError(f"--roi {', '.join(unknown)}: not a phantom organ ({', '.join(NAMES)})")
    folder = folder or temp_folder()
    t0 = time.perf_counter()
    model = train_band_unet(NAMES, spacing=(1.5, 1.5, 1.5), patch=(patch,) * 3, train_patch=(TRAIN_PATCH,) * 3,
                            features=(8, 16, 32), hu_step=hu_step, iterations=iterations, lr=1e-2,
                            train_shape_zyx=TRAIN_SHAPE_ZYX, path=folder / "model")
    train_s = time.perf_counter() - t0
    image, truth = _phantom(folder, (slices, size, size), hu_step)
    small, _ = _phantom(folder, (48, 128, 128), hu_step)
    ids = [NAMES.index(r) + 1 for r in roi]
    keep = {str(k): k for k in ids}
    preds = {}
    for fast in (False, True):
        p = make_predictor(model, torch.device("cpu"), fast_roi=fast)
        p.allow_tqdm = False
        p.roi_labels = ids
        p.predict_case([str(small)])  # warm-up: one-time costs before anything is timed
        preds[fast] = p
    times: Dict[bool, List[float]] = {False: [], True: []}
    segs = {}
    for _ in range(repeat):
        for fast in (False, True):
            t = time.perf_counter()
            segs[fast] = keep_classes(preds[fast].predict_case([str(image)]).segmentation, keep)
            times[fast].append(time.perf_counter() - t)
    full, fast = preds[False], preds[True]
    row = {"benchmark": "roi", "case": f"phantom {size}x{size}x{slices} @0.8x0.8x1.0 mm", "roi": list(roi),
           "repeats": repeat, "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
           "train_s": round(train_s, 1), "train_iterations": iterations, "train_patch": TRAIN_PATCH, "train_shape_zyx": list(TRAIN_SHAPE_ZYX),
           "full_s": round(float(np.median(times[False])), 2), "fast_s": round(float(np.median(times[True])), 2),
           "time_ratios": [round(b / a, 3) for a, b in zip(times[False], times[True])],
           "full_windows": full.windows_run, "full_windows_skipped_air": full.windows_skipped,
           "coarse_windows": fast.coarse_windows, "fine_windows": fast.windows_run,
           "fast_full_windows": fast.full_windows, "image_shape_zyx": [slices, size, size],
           "fast_fallback": fast.roi_fallback,
           "roi_box": None if fast.roi_box_used is None else [[b.start, b.stop] for b in fast.roi_box_used]}
    row["time_ratio"] = round(row["fast_s"] / row["full_s"], 3)
    d_pair = dice_per_class(segs[True], segs[False], max(ids) + 1)
    row["dsc_fast_vs_full"] = {NAMES[k - 1]: round(d_pair.get(k, float("nan")), 4) for k in ids}
    for name, seg in (("full", segs[False]), ("fast", segs[True])):
        d = dice_per_class(seg, keep_classes(truth.copy(), keep), max(ids) + 1)
        row[f"dsc_{name}_vs_labels"] = {NAMES[k - 1]: round(d.get(k, float("nan")), 4) for k in ids}
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suprem_nnunet.benchmarks roi", description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=300, help="phantom slices (512x512 each)")
    p.add_argument("--size", type=int, default=512, help="phantom in-plane size")
    p.add_argument("--roi", default="liver,spleen", help=f"ROI classes, among {','.join(NAMES)}")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per side, alternating")
    p.add_argument("--iterations", type=int, default=TRAIN_ITERATIONS, help="training iterations of the model")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (model, phantom)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = temp_folder()
    try:
        row = bench_roi(args.slices, args.size, [r.strip() for r in args.roi.split(",") if r.strip()],
                        args.repeat, args.iterations, folder=folder)
    except ValueError as e:
        p.error(str(e))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(row, indent=1))
    return 0
