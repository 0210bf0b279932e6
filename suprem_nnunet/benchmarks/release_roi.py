"""`python -m suprem_nnunet.benchmarks release-roi`: a released SuPreM U-Net's direct inference with
`--roi-subset liver,spleen` on a 244x202x224 grid at 1.5 mm, end to end, per window overlap.

The network is a release-layout checkpoint (`zoo.layouts.release_like_checkpoint("unet",
base_features=32)`, the Universal-Model file the SuPreM U-Net release uses, random weights) read by
`zoo.release.load_released`, on the backend asked for. The CT is built from a real abdomen's label map
(default: WORD's manual `word_0014` in `../shared/data/real/word_labels/`, liver 1 and spleen 2),
resampled (nearest) onto the grid and centred on its liver + spleen (HU: liver 60, spleen 50, other
labels 30, the rest -100). Random weights find random organs, so the coarse pass runs and is timed
(`zoo.predict.coarse_roi_box`), but the windows run on the box a coarse pass that finds the organs would
give: the label map's liver + spleen + `ROI_MARGIN_MM` on the 1.5 mm grid (`predict_released(...,
roi_box=...)`). Each overlap is one end-to-end `predict_released` (read, resample, windows, largest
components, write) after one untimed window (the backend's export or compile). Printed: one JSON object
per overlap and precision (wall and CPU seconds, windows run, the coarse pass's seconds, the box) and the
windows the whole grid would take at that overlap (MONAI's scan rule; not run). `--precisions f32 bf16`
runs each overlap in both (bf16 as `suprem_predict --bf16` runs it: `inference.backends.release_runner`)
and adds the bf16 masks' Dice against the f32 masks of the same overlap, per class in the box.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from .predict import dice_per_class, temp_folder
from ..inference.backends import BACKENDS, BackendConfig, release_runner
from ..zoo import predict as zoo_predict
from ..zoo.layouts import release_like_checkpoint
from ..zoo.release import load_released

log = logging.getLogger(__name__)

WORD_LABEL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "word_labels" / "word_0014.nii.gz"
GRID_XYZ = (244, 202, 224)
PATCH = 96


def whole_grid_windows(size: Sequence[int], overlap: float, patch: int = PATCH) -> int:
    """Windows MONAI's sliding window takes on `size` at `overlap` (interval int(patch * (1 - overlap)))."""
    interval = max(1, int(patch * (1 - overlap)))
    return int(np.prod([1 if n <= patch else math.ceil((n - patch) / interval) + 1 for n in size]))


def abdomen_ct(label_file: Path, folder: Path, roi_ids: Sequence[int], size_xyz: Sequence[int] = GRID_XYZ,
               spacing: float = 1.5) -> Tuple[Path, sitk.Image]:
    """(CT file, its label map on the same grid): the label map resampled onto `size_xyz` voxels of
    `spacing` mm, centred on the `roi_ids` labels, painted with HU per class."""
    lab = sitk.ReadImage(str(label_file))
    arr = sitk.GetArrayFromImage(lab)
    where = np.argwhere(np.isin(arr, list(roi_ids)))
    if not len(where):
        raise ValueError(f"{label_file}: none of the labels {list(roi_ids)}")
    centre_idx = (where.min(0) + where.max(0)) / 2.0  # z, y, x
    centre = np.array(lab.TransformContinuousIndexToPhysicalPoint([float(v) for v in centre_idx[::-1]]))
    grid = sitk.Image([int(v) for v in size_xyz], sitk.sitkUInt8)
    grid.SetSpacing((spacing,) * 3)
    grid.SetDirection(lab.GetDirection())
    grid.SetOrigin(tuple(centre - np.array(lab.GetDirection()).reshape(3, 3) @ (np.array(size_xyz) * spacing / 2)))
    on_grid = sitk.Resample(lab, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    labels = sitk.GetArrayFromImage(on_grid)
    hu = np.full(labels.shape, -100, np.int16)
    hu[labels > 0] = 30
    for k, value in zip(roi_ids, (60, 50)):
        hu[labels == k] = value
    image = sitk.GetImageFromArray(hu)
    image.CopyInformation(on_grid)
    path = folder / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    return path, on_grid


def roi_grid_box(labels: sitk.Image, grid: sitk.Image, roi_ids: Sequence[int],
                 margin_mm: float = zoo_predict.ROI_MARGIN_MM) -> zoo_predict.GridBox:
    """The box of the protocol's grid around the `roi_ids` labels + `margin_mm` (x, y, z)."""
    on = sitk.GetArrayFromImage(sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    idx = np.argwhere(np.isin(on, list(roi_ids)))[:, ::-1]
    return zoo_predict.grown_box(idx.min(0), idx.max(0), grid, margin_mm)


class _Counting(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def bench_release_roi(label_file: Path, overlaps: Sequence[float], backend: str = "openvino",
                      roi_ids: Sequence[int] = (1, 2), folder: Optional[Path] = None,
                      precisions: Sequence[str] = ("f32",)) -> List[Dict]:
    """The run described in the module doc; one row per overlap and precision."""
    folder = folder or temp_folder()
    ckpt = folder / "supervised_suprem_unet_2100.pth"
    torch.save(release_like_checkpoint("unet", base_features=32, seed=0), ckpt)
    model = load_released(ckpt).eval()
    ct, labels = abdomen_ct(label_file, folder, roi_ids)
    image = sitk.ReadImage(str(ct))
    preset = zoo_predict.load_preset(model.backbone_name)
    grid = zoo_predict.preprocess_ct(image, preset)[1]
    box = roi_grid_box(labels, grid, roi_ids)
    runners = {}
    for precision in precisions:
        net = release_runner(BackendConfig(backend, folder / "cache"), model, "cpu", precision == "bf16")
        runners[precision] = _Counting(net if net is not None else model)
        with torch.inference_mode():
            runners[precision](torch.zeros(1, 1, PATCH, PATCH, PATCH))  # one-time export / compile, untimed
    rows = []
    names = ["liver", "spleen"]
    for overlap, precision in [(o, p) for o in overlaps for p in precisions]:
        runner = runners[precision]
        runner.calls = 0
        t, cpu = time.perf_counter(), time.process_time()
        zoo_predict.coarse_roi_box(runner, image, grid, model.class_names, names, preset, (PATCH,) * 3, 0.5, 1,
                                   "gaussian", "cpu")  # paid as the real run pays it; its box is not used
        coarse_s, coarse_windows = time.perf_counter() - t, runner.calls
        seg = folder / f"seg_{int(overlap * 100)}_{precision}.nii.gz"
        zoo_predict.predict_released(model, ct, seg, overlap=overlap, roi_names=names, runner=runner, roi_box=box)
        row = {"benchmark": "release-roi", "backend": backend, "precision": precision,
               "threads": torch.get_num_threads(), "grid_xyz": list(grid.GetSize()), "overlap": overlap,
               "wall_s": round(time.perf_counter() - t, 1),
               "cpu_s": round(time.process_time() - cpu, 1), "windows": runner.calls, "coarse_windows": coarse_windows,
               "coarse_s": round(coarse_s, 1), "box_xyz": [[b.start, b.stop] for b in box],
               "whole_grid_windows": whole_grid_windows(grid.GetSize(), overlap),
               "load_average": [round(v, 2) for v in os.getloadavg()]}
        f32 = folder / f"seg_{int(overlap * 100)}_f32.nii.gz"
        if precision == "bf16" and f32.is_file():
            d = dice_per_class(sitk.GetArrayFromImage(sitk.ReadImage(str(seg))),
                               sitk.GetArrayFromImage(sitk.ReadImage(str(f32))), len(model.class_names) + 1)
            row["dice_vs_f32"] = {k: round(v, 4) for k, v in d.items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suprem_nnunet.benchmarks release-roi",
                                description=__doc__.splitlines()[0])
    p.add_argument("--label", default=str(WORD_LABEL), help="a real abdomen's label map (liver and spleen labelled)")
    p.add_argument("--roi-ids", default="1,2", help="the label map's liver and spleen ids (WORD: 1,2)")
    p.add_argument("--overlaps", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--backend", default="openvino", choices=list(BACKENDS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precisions", nargs="+", choices=["f32", "bf16"], default=["f32"],
                   help="run each overlap in these (f32 first, so that bf16's masks are compared with it)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not Path(args.label).is_file():
        p.error(f"--label {args.label}: no such file (the default is WORD's word_0014 in ../shared/data/real)")
    torch.set_num_threads(args.threads)
    folder = temp_folder()
    try:
        bench_release_roi(Path(args.label), args.overlaps, args.backend,
                          [int(v) for v in args.roi_ids.split(",")], folder, args.precisions)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
