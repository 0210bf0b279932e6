"""`python -m suprem_nnunet.benchmarks mirroring-real`: the left/right mirroring policies on the real CT.

The real CT of `../shared/data/real/totalseg_example_sm` (TotalSegmentator's example, 122x101x30 at 3
mm, its labels TotalSegmentator v2 predictions mapped to our unified names) is the only labelled real CT
here, so this is a training-set fit: per (policy, seed) a fresh nnU-Net-planned PlainConvUNet (8-64
features, patch <= 32x48x48) trains on that one case with the policy written into its plans
(`planning/mirroring.py`: `nnunet` mirrors every axis with labels kept, `omit` leaves the left-right
axis out, `swap` mirrors it and swaps each left/right pair's labels), then predicts the same CT without
test-time mirroring; DSC per class against its labels. What it answers: can the network put each sided
organ on its own side under the policy. It says nothing about held-out cases (the phantom comparisons
do that). One JSON line per run; the unit is the class of one case, each seed a separate training run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from .predict import temp_folder
from ..dataset.raw import write_annotated_classes, write_dataset_json
from ..inference.predict import predict
from ..labels import totalseg_v2_id_to_unified
from ..planning.mirroring import POLICIES
from ..planning.planner import PlanningCaps, plan_and_preprocess, plans_name_for
from ..training.base import SupremPretrainer, TrainingBudget
from ..training.run import build_trainer, train

log = logging.getLogger(__name__)

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "totalseg_example_sm"
#: five left/right pairs the example holds, and two unsided organs as controls
CLASSES = ("liver", "spleen", "kidney_left", "kidney_right", "lung_left", "lung_right", "autochthon_left",
           "autochthon_right", "iliopsoas_left", "iliopsoas_right")
DATASET = "Dataset050_RealCTSided"


def real_labels(folder: Path, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """The example's TotalSegmentator v2 label map as ids 1..K of `classes` (z, y, x)."""
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "seg_total_v2.nii.gz")))
    lab = np.zeros(seg.shape, np.uint8)
    for ts_id, name in totalseg_v2_id_to_unified().items():
        if name in classes:
            lab[seg == ts_id] = list(classes).index(name) + 1
    return lab


def run_policy(policy: str, seed: int, epochs: int, iterations: int, root: Path, folder: Path = REAL) -> Dict:
    """One training run under `policy` in its own nnU-Net folders below `root`; its row."""
    for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / v).mkdir(parents=True, exist_ok=True)
        os.environ[v] = str(root / v)  # nnunetv2 reads them lazily
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    lab = real_labels(folder)
    raw = root / "nnUNet_raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(exist_ok=True)
    sitk.WriteImage(ct, str(raw / "imagesTr" / "ts_example_0000.nii.gz"))
    label = sitk.GetImageFromArray(lab)
    label.CopyInformation(ct)
    sitk.WriteImage(label, str(raw / "labelsTr" / "ts_example.nii.gz"))
    write_dataset_json(raw, list(CLASSES), 1)
    write_annotated_classes(raw, {"ts_example": list(CLASSES)})
    t = time.time()
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's planner prints its plans
        plans = plan_and_preprocess(DATASET, "nnunet", ("3d_fullres",), PlanningCaps((32, 48, 48), 8, 64, 2),
                                    num_processes=1, verify=False, left_right_mirroring=policy)
    trainer = build_trainer(SupremPretrainer, DATASET, plans_name_for("nnunet"))
    out = train(trainer, TrainingBudget(epochs=epochs, iterations_per_epoch=iterations, val_iterations=1,
                                        initial_lr=3e-3, optimizer="adamw"), seed=seed)
    written = predict(folder / "ct.nii.gz", root / "pred", out.parent, device="cpu", mirror=False)
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(written[0])))
    dsc = {}
    for i, name in enumerate(CLASSES):
        a, b = pred == i + 1, lab == i + 1
        dsc[name] = round(2.0 * float((a & b).sum()) / float(a.sum() + b.sum()), 3)
    return {"benchmark": "mirroring-real", "policy": policy, "seed": seed, "iterations": epochs * iterations,
            "plans_mirroring": plans.get("suprem", {}).get("mirroring"), "dsc": dsc,
            "seconds": round(time.time() - t, 1)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suprem_nnunet.benchmarks mirroring-real",
                                description=__doc__.splitlines()[0])
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--iterations-per-epoch", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--real", default=str(REAL), help="folder with ct.nii.gz and seg_total_v2.nii.gz")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (Path(args.real) / "seg_total_v2.nii.gz").is_file():
        p.error(f"--real {args.real}: no seg_total_v2.nii.gz there (the real data folder ../shared/data/real)")
    torch.set_num_threads(args.threads)
    rows: List[Dict] = []
    for seed in args.seeds:
        for policy in args.policies:
            root = temp_folder()
            try:
                rows.append(run_policy(policy, seed, args.epochs, args.iterations_per_epoch, root, Path(args.real)))
            finally:
                shutil.rmtree(root, ignore_errors=True)
            print(json.dumps(rows[-1]), flush=True)
    return 0
