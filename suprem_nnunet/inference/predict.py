"""Predict with a trained model on CT files, writing NIfTI in each input's exact geometry.

Built on nnunetv2's nnUNetPredictor, initialised from our own checkpoint (read with
weights_only=True) instead of nnunetv2's trainer-class search.
"""
from __future__ import annotations

import io
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch

from ..dataset.cases import IMAGE_ENDINGS, check_readable, list_inputs
from ..dataset.raw import atomic_write_json, label_names
from ..models.trained import TrainedModel, build_trained_network, read_trained_model
from ..sharding import check_part, take_part
from .backends import BackendConfig, cpu_backend, network_provenance, release_runner
from .outputs import (class_statistics, keep_classes, validate_roi, write_class_masks, write_class_table,
                      write_probabilities, write_statistics)
from .preview import write_preview
from ..training.sided import model_prediction_swap
from .fast_predictor import SupremPredictor
from .dicom import dicom_series, series_to_nifti
from .dicom_seg import case_outputs, seg_source
from ..zoo import load_released, predict_released
from ..preprocessing.plans_manager import SupremPlansManager as PlansManager

from ..configs import as_config
from ..errors import InputError, MissingFileError
from .fast_roi import FastRoiPredictor

log = logging.getLogger(__name__)

def split_bad_cases(cases: Dict[str, List[str]], skip_bad: bool) -> Dict[str, str]:
    """{case: one-line problem} of the cases whose files fail `check_readable`, removed from `cases`;
    without `skip_bad` the first problem is raised instead. All cases bad: the first problem is raised."""
    bad: Dict[str, str] = {}
    for c in sorted(cases):
        try:
            check_readable(cases[c])
        except (ValueError, FileNotFoundError) as e:
            if not skip_bad:
                raise
            bad[c] = str(e)
    if bad and len(bad) == len(cases):
        raise InputError(f"{bad[sorted(bad)[0]]} (and every other input is bad too)" if len(bad) > 1
                         else bad[sorted(bad)[0]])
    for c in bad:
        log.warning("skipped %s: %s", c, bad[c])
        del cases[c]
    return bad


def write_skipped(out: Path, skipped: Dict[str, str], skip_bad: bool, num_parts: int = 1,
                  part_id: int = 0) -> None:
    """`skipped.json` ({case: problem}) in the output folder of a `--skip-bad` run (one file per part
    of a sharded run: `skipped_file_name`)."""
    if skip_bad:
        atomic_write_json(out / skipped_file_name(num_parts, part_id), skipped)


SKIPPED_FILE = "skipped.json"


def skipped_file_name(num_parts: int = 1, part_id: int = 0) -> str:
    """`skipped.json`; part K of N (N > 1) writes `skipped.part<K>of<N>.json`, parts sharing one output folder."""
    return SKIPPED_FILE if num_parts == 1 else f"skipped.part{part_id}of{num_parts}.json"


def select_part(cases: Dict[str, List[str]], num_parts: int, part_id: int) -> Dict[str, List[str]]:
    """The cases of part `part_id` of `num_parts`: every `num_parts`-th of the sorted case names from
    `part_id` on (nnU-Net's `predict_from_files(num_parts, part_id)`), before any file is checked, so
    every machine draws the same split from the same folder."""
    if num_parts == 1:
        return cases
    mine = take_part(cases, num_parts, part_id)
    log.info("part %d of %d: %d of %d case(s)", part_id, num_parts, len(mine), len(cases))
    return {c: cases[c] for c in mine}


def remove_stale_temp(out: Path) -> None:
    """Delete the `.tmp-<pid>` folders that killed runs left in the output folder (their process is gone)."""
    for d in out.glob(".tmp-*"):
        pid = d.name[len(".tmp-"):]
        if not d.is_dir() or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            log.info("removing %s, left by an interrupted run", d)
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:  # a live process of another user
            continue


def build_network(model: TrainedModel) -> torch.nn.Module:
    """The model's network (deep supervision off) with its weights loaded (one-line ValueError
    naming the checkpoint when they do not fit it)."""
    return build_trained_network(model)


def make_predictor(model: TrainedModel, device: torch.device, mirror: Optional[bool] = None,
                   step_size: float = 0.5, fast: bool = False, fast_data_path: bool = True,
                   bf16: Optional[bool] = False, fast_roi: bool = False,
                   backend: Optional[BackendConfig] = None):
    """One `SupremPredictor` for a whole folder: network built and weights loaded once.

    `fast_data_path=False` gives nnU-Net's own data path (scipy/skimage resampling, full-resolution
    probabilities, no body crop, float16 window sums, float32 network) inside the same predictor, for
    comparison. `bf16`: the network in bfloat16 on CPU (None: where the CPU has native bf16; default off:
    on a trained demo model 3e-4 of the voxels change and the worst class's DSC against float32 was 0.984).
    `fast_roi`: a `FastRoiPredictor`, which with `roi_labels` set locates the ROI with a coarse pass,
    crops the input to it and runs the model on the crop (`inference.fast_roi`).
    `backend`: where the network runs on CPU (`inference/backends.py`; default torch)."""
    from contextlib import redirect_stdout


    use_mirror, axes = mirroring(False if fast else mirror, device.type, model.mirror_axes)
    pm = PlansManager(model.plans)
    with redirect_stdout(io.StringIO()):  # nnU-Net prints its device notes
        cls = FastRoiPredictor if fast_roi else SupremPredictor
        predictor = cls(tile_step_size=1.0 if fast else step_size, use_gaussian=True,
                        use_mirroring=use_mirror, perform_everything_on_device=device.type == "cuda",
                        device=device, verbose=False, allow_tqdm=True,
                        fast_resampling=fast_data_path, chunked_export=fast_data_path,
                        body_crop=fast_data_path, nearest_export=fast, fast_window=fast_data_path,
                        onednn_conv=fast_data_path,
                        bf16=(bf16 if fast_data_path else False) if device.type == "cpu" else False)
        predictor.manual_initialization(build_network(model).to(device), pm, pm.get_configuration(model.configuration),
                                        [model.state_dict], model.dataset_json, model.trainer_name, axes)
    predictor.mirror_swap = model_prediction_swap(model, axes) if use_mirror else None  # left/right pairs
    wrapped = cpu_backend(backend, predictor.network, device, predictor.bf16)
    if wrapped is not None:
        predictor.network = wrapped
    return predictor


@dataclass
class OutputOptions:
    """What to write per case besides the multi-label map."""

    per_class: bool = False
    statistics: bool = False
    preview: bool = False
    save_probabilities: bool = False


def resolve_inputs(inputs: Union[str, Path], num_channels: int, workdir: Path,
                   series_uid: Optional[str] = None) -> Dict[str, List[str]]:
    """{case: [channel files]}: an image file, a folder of images, or a folder holding a DICOM series
    (converted into `workdir`, case named after the folder). ValueError / FileNotFoundError naming the path."""
    p = Path(inputs)
    if p.is_dir() and not any(f.name.lower().endswith(IMAGE_ENDINGS) and not f.name.startswith(".")
                              for f in p.iterdir() if f.is_file()):
        if not dicom_series(p):
            raise MissingFileError(f"{p}: no image files ({', '.join(IMAGE_ENDINGS)}) and no DICOM series in this folder")
        if num_channels != 1:
            raise InputError(f"{p}: the model takes {num_channels} channels; a DICOM series is one")
        case = p.resolve().name
        workdir.mkdir(parents=True, exist_ok=True)
        return {case: [str(series_to_nifti(p, workdir / f"{case}_0000.nii.gz", series_uid))]}
    if series_uid is not None:
        raise InputError(f"{p}: --series-uid given but this is not a folder of DICOM files")
    return list_inputs(p, num_channels)


@dataclass
class PredictConfig:
    """One prediction run (`predict`); the defaults are `suprem_predict`'s, described there."""

    inputs: Union[str, Path]
    output_dir: Union[str, Path]
    model: Union[str, Path, TrainedModel]
    device: str = "cpu"
    mirror: Optional[bool] = None
    step_size: float = 0.5
    per_class: bool = False
    roi_subset: Optional[Sequence[str]] = None
    fast: bool = False
    statistics: bool = False
    preview: bool = False
    save_probabilities: bool = False
    series_uid: Optional[str] = None
    fast_data_path: bool = True
    skip_bad: bool = False
    bf16: bool = False
    output_type: str = "nifti"
    num_parts: int = 1
    part_id: int = 0
    roi_full: bool = False
    backend: Optional[BackendConfig] = None
    threads: Optional[int] = None


def predict(config: Union[PredictConfig, str, Path], *args, **kwargs) -> List[Path]:
    """Segment every case of `inputs` into `output_dir/<case>.nii.gz`; returns the written label maps.
    Takes a PredictConfig, or its fields as arguments (`predict(inputs, output_dir, model, ...)`).

    Mirroring (test-time augmentation) defaults to on for CUDA and off for CPU. `roi_subset`: only
    those classes are written (others become background). `fast`: no overlap between windows, no
    mirroring, and the label map taken at the network's resolution and upsampled by nearest
    neighbour. Per case, optionally: `<case>/<class>.nii.gz` binary masks (`per_class`; an organ's
    mask includes the tumours it hosts), `<case>_statistics.json/.csv`, `<case>_preview.png`,
    `<case>.npz` probabilities (format in `inference.outputs`). `classes.json`/`.csv` give the ids.
    `bf16`: on CPU, the network in bfloat16 (faster on CPUs with native bf16; labels may differ at
    class borders). `output_type`: "nifti", "dicom-seg" (`<case>.dcm`, DICOM series input only; see
    `inference.dicom_seg`) or "both". `num_parts`/`part_id`: only part `part_id` (0-based) of the
    sorted cases (`select_part`), so that N processes or machines share one input folder; each writes
    only its own cases (the class tables, the same for every part, are written by each).
    """
    from tqdm import tqdm

    cfg = as_config(PredictConfig, config, args, kwargs)
    check_part(cfg.num_parts, cfg.part_id)
    seg_src = seg_source(cfg.inputs, cfg.output_type)
    m = cfg.model if isinstance(cfg.model, TrainedModel) else read_trained_model(cfg.model)
    names = label_names(m.dataset_json)
    roi = validate_roi(cfg.roi_subset, names, str(m.path))
    dev = torch.device(cfg.device)
    set_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = {n: i + 1 for i, n in enumerate(names)}
    kept = {n: ids[n] for n in roi} if roi else ids
    opts = OutputOptions(cfg.per_class, cfg.statistics, cfg.preview, cfg.save_probabilities)
    ending = m.dataset_json["file_ending"]
    remove_stale_temp(out)
    tmp = out / f".tmp-{os.getpid()}"
    written = []
    try:  # everything goes to a temp folder first: no half-written file under a final name
        tmp.mkdir(exist_ok=True)
        cases = select_part(resolve_inputs(cfg.inputs, len(m.dataset_json["channel_names"]), tmp / "inputs",
                                           cfg.series_uid), cfg.num_parts, cfg.part_id)
        skipped = split_bad_cases(cases, cfg.skip_bad)
        fast_roi = bool(roi) and not cfg.roi_full and not cfg.save_probabilities
        predictor = make_predictor(m, dev, cfg.mirror, cfg.step_size, cfg.fast, cfg.fast_data_path, cfg.bf16,
                                   fast_roi=fast_roi, backend=cfg.backend)
        predictor.roi_labels = sorted(kept.values()) if roi else None  # export only these classes
        for c in tqdm(sorted(cases), desc="cases", unit="case", disable=len(cases) < 2):
            res = predictor.predict_case(cases[c], probabilities=cfg.save_probabilities)
            seg = keep_classes(res.segmentation, kept) if roi else res.segmentation
            seg_tmp = tmp / f"{c}{ending}"
            predictor.write_segmentation(seg, str(seg_tmp), res.properties)
            if cfg.save_probabilities:
                write_probabilities(out / f"{c}.npz", res.probabilities, ["background", *names],
                                    list(range(len(names) + 1)), res.probability_geometry,
                                    _read_image(cases[c][0]))
            final = finish_case(c, seg_tmp, cases[c][0], kept, out, opts, ending)
            written.extend(case_outputs(final, seg_src, cfg.series_uid, kept, cfg.output_type, str(m.path)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_class_table(out, kept)
    write_skipped(out, skipped, cfg.skip_bad, cfg.num_parts, cfg.part_id)
    atomic_write_json(out / "dataset.json", {"labels": {"background": 0, **kept}, "file_ending": ending,
                                             "model": str(m.path), "inference": {
                                                 **network_provenance(predictor.network), "device": dev.type,
                                                 "threads": torch.get_num_threads(), "bf16": predictor.bf16}})
    log.info("wrote %d prediction(s) to %s", len(written), out)
    return written


def set_threads(threads: Optional[int]) -> None:
    """torch's intra-op threads for this process (None: unchanged); ValueError for a count below 1."""
    if threads is None:
        return
    if int(threads) < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(int(threads))


def _read_image(path: Union[str, Path]):
    import SimpleITK as sitk

    return sitk.ReadImage(str(path))


def finish_case(case: str, seg_tmp: Path, image_file: str, class_ids: Mapping[str, int], out: Path,
                opts: OutputOptions, ending: str = ".nii.gz") -> Path:
    """Per-class masks, statistics and preview from the (temporary) label map, then the label map's rename."""
    import SimpleITK as sitk

    if opts.per_class:
        write_class_masks(seg_tmp, class_ids, out / case)
    if opts.statistics or opts.preview:
        seg_img, image = sitk.ReadImage(str(seg_tmp)), _read_image(image_file)
        if opts.statistics:
            rows = class_statistics(sitk.GetArrayFromImage(seg_img), sitk.GetArrayFromImage(image),
                                    seg_img.GetSpacing(), class_ids)
            write_statistics(out, case, rows)
        if opts.preview:
            write_preview(image, seg_img, class_ids, out / f"{case}_preview.png", title=case)
    final = out / f"{case}{ending}"
    os.replace(seg_tmp, final)
    return final


def mirroring(requested: Optional[bool], device_type: str, allowed_axes: Optional[Sequence[int]]):
    """(use mirroring, axes) for test-time mirroring: default on for CUDA, off otherwise; the model's
    stored axes are passed unchanged (a model whose plans omit the left-right axis stored none for
    it), and a model trained without mirroring (no axes) never mirrors."""
    use = (device_type == "cuda") if requested is None else bool(requested)
    axes = tuple(int(a) for a in allowed_axes) if allowed_axes else None
    if use and axes is None:
        log.info("test-time mirroring off: the model was trained without mirroring (no allowed axes)")
        use = False
    return use, axes


def predict_with_release(inputs: Union[str, Path], output_dir: Union[str, Path], name: str, device: str = "cpu",
                         per_class: bool = False, *, roi_subset: Optional[Sequence[str]] = None, fast: bool = False,
                         statistics: bool = False, preview: bool = False, save_probabilities: bool = False,
                         series_uid: Optional[str] = None, skip_bad: bool = False,
                         output_type: str = "nifti", num_parts: int = 1, part_id: int = 0,
                         roi_full: bool = False, backend: Optional[BackendConfig] = None,
                         bf16: bool = False) -> List[Path]:
    """The paper's direct-inference protocol with a released checkpoint (zoo name or file) on every case.

    Same outputs and options as `predict`; `fast` lowers the window overlap from the protocol's 0.75
    to 0.25. Probabilities are not available (released heads give one sigmoid per class). With
    `roi_subset` (and not `roi_full`), the fast ROI of `zoo.predict.predict_released` runs: a coarse pass,
    then the protocol on the input cropped to those classes. `backend`: where the network runs on CPU;
    `bf16`: in bfloat16 there (`inference.backends.release_runner`; the sidecar records it)."""
    check_part(num_parts, part_id)
    from tqdm import tqdm


    seg_src = seg_source(inputs, output_type)
    if save_probabilities:
        raise InputError(f"{name}: --save-probabilities is not available for released checkpoints")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(out)
    tmp = out / f".tmp-{os.getpid()}"
    opts = OutputOptions(per_class, statistics, preview, False)
    written, kept = [], {}
    try:
        tmp.mkdir(exist_ok=True)
        cases = select_part(resolve_inputs(inputs, 1, tmp / "inputs", series_uid), num_parts, part_id)
        skipped = split_bad_cases(cases, skip_bad)
        model = load_released(name, map_location=device)
        names = list(getattr(model, "class_names", []) or [])
        roi = validate_roi(roi_subset, names, name) if names else None
        runner = release_runner(backend, model.eval(), device, bf16)
        for case in tqdm(sorted(cases), desc="cases", unit="case", disable=len(cases) < 2):
            f = tmp / f"{case}.nii.gz"
            ids = predict_released(model, cases[case][0], f, device=device, overlap=0.25 if fast else None,
                                   roi_names=roi if roi and not roi_full else None, runner=runner)
            kept = {n: ids[n] for n in roi} if roi else dict(ids)
            if roi:
                _keep_in_file(f, kept)
            sidecar = tmp / f"{case}.json"
            if sidecar.is_file():
                os.replace(sidecar, out / f"{case}.json")
            final = finish_case(case, f, cases[case][0], kept, out, opts)
            written.extend(case_outputs(final, seg_src, series_uid, kept, output_type, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if kept:
        write_class_table(out, kept)
    write_skipped(out, skipped, skip_bad, num_parts, part_id)
    return written


def _keep_in_file(seg_file: Path, class_ids: Mapping[str, int]) -> None:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(seg_file))
    arr = keep_classes(sitk.GetArrayFromImage(img), class_ids)
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(seg_file), True)
