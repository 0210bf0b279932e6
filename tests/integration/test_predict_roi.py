"""--roi-subset exports only the requested classes; stale temporary folders of killed runs are removed."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from suprem_nnunet.inference import fast_predictor
from suprem_nnunet.inference.predict import make_predictor, remove_stale_temp
from suprem_nnunet.benchmarks.reference_nets import band_model, band_phantom


def test_roi_export_resamples_only_the_roi_region(monkeypatch, tmp_path, one_torch_thread):
    """Only the ROI classes are resampled, not the whole grid with the other classes dropped afterwards."""
    import SimpleITK as sitk

    names = ["liver", "spleen", "aorta", "stomach"]
    hu, _ = band_phantom((40, 56, 52), len(names) + 1, seed=1)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((1.4, 1.3, 1.7))
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    p = make_predictor(band_model(names, spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16)), torch.device("cpu"))
    p.allow_tqdm = False
    data, props = p.preprocess([str(tmp_path / "ct.nii.gz")])
    logits = p.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
    full = p.logits_to_segmentation(logits, props)

    seen = []
    real = fast_predictor.resample_logits_to_labels
    monkeypatch.setattr(fast_predictor, "resample_logits_to_labels",
                        lambda x, *a, input_box=None, **k: seen.append(input_box) or real(x, *a, input_box=input_box, **k))
    p.roi_labels = [2]
    roi = p.logits_to_segmentation(logits, props)
    (box,) = seen
    assert np.prod([b.stop - b.start for b in box]) < 0.5 * np.prod(logits.shape[1:])  # a part of the grid
    assert np.array_equal(roi == 2, full == 2) and (full == 2).sum() > 50  # the same voxels as the full export
    logits = logits.clone()
    logits[3] = -100.0  # no voxel of class 3: nothing is resampled, all background
    p.roi_labels = [3]
    assert not p.logits_to_segmentation(logits, props).any() and len(seen) == 1


def test_stale_temp_folders_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, mine = (tmp_path / f".tmp-{pid}" for pid in (dead.pid, os.getppid(), os.getpid()))
    for d in (stale, live, mine):
        d.mkdir()
        (d / "half.nii.gz").write_bytes(b"x")
    (tmp_path / ".tmp-notapid").mkdir()
    remove_stale_temp(tmp_path)
    assert not stale.exists()
    assert live.exists() and mine.exists() and (tmp_path / ".tmp-notapid").exists()
