"""Side-by-side benchmarks of our data path and nnunetv2 2.8.1's defaults, in one process, same model and CT.

`predict`: file -> label map. nnU-Net: `DefaultPreprocessor.run_case` -> `nnUNetPredictor.
predict_logits_from_preprocessed_data` -> `convert_predicted_logits_to_segmentation_with_correct_shape`
(what `predict_from_files_sequential` runs per case, without writing). Ours: `SupremPredictor.predict_case`.
Same network, step size and mirroring on both sides, float32 on both unless `bf16` (ours in bfloat16;
nnU-Net always runs float32 on CPU). `preprocess`: nnunetv2's
`DefaultPreprocessor.run_case` vs our `SupremPreprocessor.run_case` (torch resampling of image and
labels), with the label file when the case has one.

The model is `IntensityBandNet` (fixed weights, smooth masks: class k where the smoothed HU lies in a
30 HU band) plus a small seeded nnU-Net PlainConvUNet whose output is added at 1e-3 scale, so each patch
costs a real network's forward pass. Peak memory: the process's peak RSS (VmHWM, reset before each run
through /proc/self/clear_refs, so each side's peak is its own), reported both as the peak and as the
growth over the RSS before the run.
"""
from __future__ import annotations

import gc
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from .reference_nets import band_phantom, band_model
from ..labels import ATLAS_CLASSES
from ..inference.predict import build_network, make_predictor
from ..preprocessing.run import SupremPreprocessor

log = logging.getLogger(__name__)
REAL_CT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "totalseg_example_sm" / "ct.nii.gz"


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


#: peak RSS (GiB, the whole process: VmHWM) and CPU seconds of the last `measure` call
LAST_PEAK_GIB = {"value": 0.0, "cpu_s": 0.0}


def measure(fn: Callable[[], object]) -> Tuple[object, float, float]:
    """(result, seconds, peak RSS growth in GiB) of fn(); the absolute peak and the process CPU time (robust
    to other load on the machine when torch runs one thread) go to LAST_PEAK_GIB."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    base = _rss_kib("VmRSS")
    t, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sec = time.perf_counter() - t
    LAST_PEAK_GIB["value"], LAST_PEAK_GIB["cpu_s"] = _rss_kib("VmHWM") / 2 ** 20, time.process_time() - cpu
    return out, sec, max(0, _rss_kib("VmHWM") - base) / 2 ** 20


def dice_per_class(a: np.ndarray, b: np.ndarray, num_classes: int) -> Dict[int, float]:
    out = {}
    for k in range(1, num_classes):
        x, y = a == k, b == k
        s = int(x.sum()) + int(y.sum())
        if s:
            out[k] = 2.0 * int((x & y).sum()) / s
    return out


def phantom_file(folder: Path, shape_zyx: Sequence[int], spacing_xyz=(0.8, 0.8, 1.0), num_classes: int = 33) -> Path:
    """A band phantom CT; its label map is written next to it (`label_file` finds it)."""
    import SimpleITK as sitk


    hu, labels = band_phantom(shape_zyx, num_classes, seed=0)
    f = folder / f"phantom_{'x'.join(map(str, shape_zyx))}.nii.gz"
    for arr, name in ((hu, f), (labels, f.with_name(f"labels_{f.name}"))):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing_xyz)
        sitk.WriteImage(img, str(name))
    return f


def label_file(image: Path) -> Optional[Path]:
    """The label map of a benchmark case: `labels_<name>` for a phantom, `seg_total_v2.nii.gz` for the real CT."""
    for cand in (image.with_name(f"labels_{image.name}"), image.with_name("seg_total_v2.nii.gz")):
        if cand.is_file():
            return cand
    return None


def benchmark_model(num_classes: int = 32, patch: int = 64, unet_features: int = 8):

    names = [c if isinstance(c, str) else c.name for c in ATLAS_CLASSES][:num_classes]
    return band_model(names, spacing=(1.5, 1.5, 1.5), patch=(patch,) * 3, unet_features=unet_features)


def nnunet_predictor(model, mirror: bool, step: float, device: torch.device = torch.device("cpu")):
    from contextlib import redirect_stdout
    from io import StringIO

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager


    with redirect_stdout(StringIO()):
        p = nnUNetPredictor(tile_step_size=step, use_mirroring=mirror, device=device, allow_tqdm=False)
    pm = PlansManager(model.plans)
    p.manual_initialization(build_network(model).to(device), pm, pm.get_configuration(model.configuration),
                            [model.state_dict], model.dataset_json, model.trainer_name, model.mirror_axes)
    return p


def run_nnunet(p, image: Path) -> np.ndarray:
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    data, _, props = p.configuration_manager.preprocessor_class().run_case(
        [str(image)], None, p.plans_manager, p.configuration_manager, p.dataset_json)
    logits = p.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
    del data
    return convert_predicted_logits_to_segmentation_with_correct_shape(logits, p.plans_manager, p.configuration_manager,
                                                                       p.label_manager, props)


def bench_predict(cases: Sequence[Tuple[str, Path, bool]], mirrors: Sequence[bool], step: float = 0.5,
                  patch: int = 64, unet_features: int = 8, bf16: Optional[bool] = False,
                  warmup: bool = True, repeat: int = 1, device: str = "cpu",
                  warmup_image: Optional[Path] = None, backend=None) -> List[Dict]:
    """cases: (name, image, also run nnU-Net). One row per case and mirroring setting. `bf16`: ours runs
    the network in bfloat16 (None: where the CPU has native bf16). `warmup`: both sides first predict the
    smallest case once, untimed, so that neither side's first timed case pays the process's one-time
    costs (as in a folder, where the model is loaded once). `repeat`: each case is predicted that many
    times by each side, alternating; times are medians (`time_ratio_range`: the per-pair ratios), peak
    memory the largest. `device`: where both sides run the network (nnU-Net's predictor keeps its
    defaults there, e.g. everything on the device for CUDA); `warmup_image`: the image of the warm-up
    (default: the smallest case); `backend`: where our network runs (`inference/backends.BackendConfig`;
    None: torch), its warm-up export or compile paid in the warm-up."""
    model = benchmark_model(patch=patch, unet_features=unet_features)
    dev = torch.device(device)
    if warmup and cases:  # one-time costs (lazy imports, oneDNN kernel generation) before anything is timed
        small = warmup_image or min(cases, key=lambda c: c[1].stat().st_size)[1]
        w = make_predictor(model, dev, mirror=False, step_size=step, bf16=bf16, backend=backend)
        w.allow_tqdm = False
        w.predict_case([str(small)])
        run_nnunet(nnunet_predictor(model, False, step, dev), small)
        del w
    rows = []
    for mirror in mirrors:
        ours = make_predictor(model, dev, mirror=mirror, step_size=step, bf16=bf16, backend=backend)
        ours.allow_tqdm = False
        if warmup and backend is not None and backend.name != "torch":  # this predictor's own compile/choice
            ours.predict_case([str(min(cases, key=lambda c: c[1].stat().st_size)[1])])
        ref = nnunet_predictor(model, mirror, step, dev)
        for name, image, with_nnunet in cases:
            row = {"benchmark": "predict", "backend": backend.name if backend is not None else "torch", "case": name, "device": device, "mirroring": mirror, "step": step,
                   "classes": 32, "torch_threads": torch.get_num_threads(), "ours_bf16": ours.bf16, "repeats": repeat}
            ours_runs, ref_runs = [], []
            for _ in range(repeat):  # alternating, so that slow phases of a shared machine hit both sides
                seg, sec, growth = measure(lambda: ours.predict_case([str(image)]).segmentation)
                ours_runs.append((sec, LAST_PEAK_GIB["cpu_s"], growth, LAST_PEAK_GIB["value"]))
                if with_nnunet:
                    want, sec, growth = measure(lambda: run_nnunet(ref, image))
                    ref_runs.append((sec, LAST_PEAK_GIB["cpu_s"], growth, LAST_PEAK_GIB["value"]))
            med = lambda runs, i: float(np.median([r[i] for r in runs]))  # noqa: E731
            row["ours_s"], row["ours_cpu_s"] = med(ours_runs, 0), med(ours_runs, 1)
            row["ours_peak_growth_gib"], row["ours_peak_gib"] = max(r[2] for r in ours_runs), max(r[3] for r in ours_runs)
            row["windows_run"], row["windows_skipped"] = ours.windows_run, ours.windows_skipped
            if with_nnunet:
                row["nnunet_s"], row["nnunet_cpu_s"] = med(ref_runs, 0), med(ref_runs, 1)
                row["nnunet_peak_growth_gib"] = max(r[2] for r in ref_runs)
                row["nnunet_peak_gib"] = max(r[3] for r in ref_runs)
                row["cpu_ratio"] = round(row["ours_cpu_s"] / row["nnunet_cpu_s"], 3)
                if repeat > 1:
                    row["time_ratio_range"] = [round(a[0] / b[0], 3) for a, b in zip(ours_runs, ref_runs)]
                d = dice_per_class(seg, want, 33)
                row["min_dsc"] = round(min(d.values()), 4) if d else None
                row["classes_compared"] = len(d)
                row["masks_equal"] = bool(np.array_equal(seg, want))
                row["time_ratio"] = round(row["ours_s"] / row["nnunet_s"], 3)
                row["memory_ratio"] = round(row["ours_peak_gib"] / max(row["nnunet_peak_gib"], 1e-9), 3)
                del want
            del seg
            rows.append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
            log.info("%s", rows[-1])
    return rows


def bench_preprocess(cases: Sequence[Tuple[str, Path]]) -> List[Dict]:
    """nnU-Net's DefaultPreprocessor vs our SupremPreprocessor (what `suprem_plan_and_preprocess`, fine-tuning
    and prediction run), same cases, with their label maps where there are (DSC per label)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager


    model = benchmark_model(unet_features=0)
    pm = PlansManager(model.plans)
    cm = pm.get_configuration(model.configuration)
    rows = []
    for name, image in cases:
        labels = label_file(image)
        seg_file = str(labels) if labels else None
        args = ([str(image)], seg_file, pm, cm, model.dataset_json)
        (ref, ref_seg, _), t_ref, m_ref = measure(lambda: DefaultPreprocessor(verbose=False).run_case(*args))
        (got, got_seg, _), t_got, m_got = measure(lambda: SupremPreprocessor(verbose=False).run_case(*args))
        rng = float(ref.max() - ref.min())
        diff = np.abs(got - ref)
        row = {"benchmark": "preprocess", "case": name, "shape": list(ref.shape[1:]), "labels": seg_file is not None,
               "nnunet_s": round(t_ref, 3), "ours_s": round(t_got, 3), "speedup": round(t_ref / t_got, 2),
               "nnunet_peak_gib": round(m_ref, 3), "ours_peak_gib": round(m_got, 3),
               "max_abs_diff_over_range": float(f"{diff.max() / rng:.2e}"),
               "mean_abs_diff_over_range": float(f"{diff.mean() / rng:.2e}")}
        if seg_file is not None:
            d = dice_per_class(got_seg[0], ref_seg[0], int(max(ref_seg.max(), got_seg.max())) + 1)
            row["label_min_dsc"] = round(min(d.values()), 4) if d else None
            row["label_voxels_differing"] = float(f"{(got_seg != ref_seg).mean():.2e}")
        rows.append(row)
        log.info("%s", rows[-1])
        del ref, got, diff, ref_seg, got_seg
    return rows


def default_cases(folder: Path, large_slices: int, nnunet_slices: int, real: Optional[Path] = None):
    """[(name, file, run nnU-Net too)]: the real CT, a 512x512xN phantom nnU-Net can afford, and the large one."""
    real = real or REAL_CT
    cases = []
    if real.is_file():
        cases.append(("real CT 122x101x30 @3mm", real, True))
    if nnunet_slices:
        cases.append((f"phantom 512x512x{nnunet_slices}", phantom_file(folder, (nnunet_slices, 512, 512)), True))
    if large_slices:
        cases.append((f"phantom 512x512x{large_slices} (ours only)", phantom_file(folder, (large_slices, 512, 512)),
                      False))
    return cases


def temp_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="suprem_bench_"))
