"""Predict with a trained model on CT files, writing NIfTI in each input's exact geometry.

Built on nnunetv2's nnUNetPredictor, initialised from our own checkpoint (read with
weights_only=True) instead of nnunetv2's trainer-class search.
"""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..dataset.raw import atomic_write_json, label_names
from ..training.checkpoint import TrainedModel, build_trained_network, read_trained_model
from .backends import BackendConfig, BackendError, make_backend, network_provenance
from .outputs import (class_statistics, keep_classes, validate_roi, write_class_masks, write_class_table,
                      write_probabilities, write_statistics)
from .preview import write_preview

log = logging.getLogger(__name__)

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def case_name(path: Union[str, Path]) -> str:
    """The file name without its image ending: 'ct_0000.nii.gz' -> 'ct_0000', 'volume-3.nii' -> 'volume-3'.

    Never strips a channel suffix: label and prediction files are named by their full stem;
    `group_channel_files` alone reads nnU-Net's `<case>_<channel>` naming of image folders.
    """
    name = Path(path).name
    for end in IMAGE_ENDINGS:
        if name.lower().endswith(end):
            return name[: -len(end)]
    return name


def cases_by_stem(files: Sequence[Union[str, Path]]) -> Dict[str, Path]:
    """{full stem: file}; two files with one stem (e.g. 'a.nii' and 'a.nii.gz') are an error naming both."""
    out: Dict[str, Path] = {}
    for f in files:
        c = case_name(f)
        if c in out:
            raise ValueError(f"{f}: case {c!r} is also {out[c]} (two files with one case name)")
        out[c] = Path(f)
    return out


def group_channel_files(files: Sequence[Union[str, Path]], num_channels: int = 1) -> Dict[str, List[str]]:
    """{case: [channel files in channel order]} for the image files of one folder.

    nnU-Net naming (`<case>_0000.nii.gz`, ...) is used only when EVERY file ends in `_NNNN` and every
    case has exactly the channels 0000..C-1 (C = `num_channels`). Otherwise, with one channel, each
    file is its own case named by its full stem ('btcv_0001.nii.gz' -> 'btcv_0001'); with several
    channels, ValueError naming the offending file.
    """
    files = [Path(f) for f in files]
    parsed = [CHANNEL_SUFFIX.match(case_name(f)) for f in files]
    groups: Dict[str, Dict[int, Path]] = {}
    if all(parsed):
        for f, m in zip(files, parsed):
            ch = groups.setdefault(m["case"], {})
            if int(m["channel"]) in ch:
                raise ValueError(f"{f}: channel {m['channel']} of case {m['case']!r} is also {ch[int(m['channel'])]}")
            ch[int(m["channel"])] = f
        if all(sorted(ch) == list(range(num_channels)) for ch in groups.values()):
            return {c: [str(ch[i]) for i in range(num_channels)] for c, ch in groups.items()}
    if num_channels == 1:
        return {c: [str(f)] for c, f in cases_by_stem(files).items()}
    for f, m in zip(files, parsed):
        if m is None:
            raise ValueError(f"{f}: the model takes {num_channels} channels, so inputs must be named "
                             f"<case>_0000 .. <case>_{num_channels - 1:04d} (nnU-Net channel naming)")
    for c, ch in groups.items():
        if sorted(ch) != list(range(num_channels)):
            first = ch[min(ch)]
            raise ValueError(f"{first}: case {c!r} has channel(s) {', '.join(f'{i:04d}' for i in sorted(ch))}, "
                             f"the model takes {num_channels} (0000..{num_channels - 1:04d})")
    raise AssertionError("unreachable")  # pragma: no cover


def list_inputs(inp: Union[str, Path], num_channels: int = 1) -> Dict[str, List[str]]:
    """{case: [channel files]} from a file or a folder (see `group_channel_files` for the naming)."""
    p = Path(inp)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(IMAGE_ENDINGS)
                       and not f.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"{p}: no image files ({', '.join(IMAGE_ENDINGS)}) in this folder")
    else:
        raise FileNotFoundError(f"{p}: no such file or folder")
    return group_channel_files(files, num_channels)


def check_readable(files: Sequence[str]) -> None:
    """Raise ValueError naming the first file that is not a whole 3D scalar image (missing, empty,
    truncated, corrupt, a header claiming too many voxels, 2D, 4D, one voxel thick along an axis) or holds
    NaN / Inf voxels."""
    from ..dataset.image_checks import check_image_file

    for f in files:
        check_image_file(f, "image", finite=True, volume=True)


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
        raise ValueError(f"{bad[sorted(bad)[0]]} (and every other input is bad too)" if len(bad) > 1
                         else bad[sorted(bad)[0]])
    for c in bad:
        log.warning("skipped %s: %s", c, bad[c])
        del cases[c]
    return bad


def write_skipped(out: Path, skipped: Dict[str, str], skip_bad: bool) -> None:
    """`skipped.json` ({case: problem}) in the output folder of a `--skip-bad` run."""
    if skip_bad:
        atomic_write_json(out / SKIPPED_FILE, skipped)


SKIPPED_FILE = "skipped.json"


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
                   bf16: Optional[bool] = False, backend: Optional[BackendConfig] = None):
    """One `SupremPredictor` for a whole folder: network built and weights loaded once.

    `fast_data_path=False` gives nnU-Net's own data path (scipy/skimage resampling, full-resolution
    probabilities, no body crop, float16 window sums, float32 network) inside the same predictor, for
    comparison. `bf16`: the network in bfloat16 on CPU (None: where the CPU has native bf16; default off:
    on a trained demo model 3e-4 of the voxels change and the worst class's DSC against float32 was 0.984).
    `backend`: where the network runs on CPU (`inference/backends.py`; default torch)."""
    from contextlib import redirect_stdout

    from ..preprocessing.plans_manager import SupremPlansManager as PlansManager  # resolves a preset's RAS reader
    from ..training.sided import model_prediction_swap
    from .fast_predictor import SupremPredictor

    use_mirror, axes = mirroring(False if fast else mirror, device.type, model.mirror_axes)
    pm = PlansManager(model.plans)
    with redirect_stdout(io.StringIO()):  # nnU-Net prints its device notes
        predictor = SupremPredictor(tile_step_size=1.0 if fast else step_size, use_gaussian=True,
                                    use_mirroring=use_mirror, perform_everything_on_device=device.type == "cuda",
                                    device=device, verbose=False, allow_tqdm=True,
                                    fast_resampling=fast_data_path, chunked_export=fast_data_path,
                                    body_crop=fast_data_path, nearest_export=fast, fast_window=fast_data_path, onednn_conv=fast_data_path,
                                    bf16=(bf16 if fast_data_path else False) if device.type == "cpu" else False)
        predictor.manual_initialization(build_network(model).to(device), pm, pm.get_configuration(model.configuration),
                                        [model.state_dict], model.dataset_json, model.trainer_name, axes)
    predictor.mirror_swap = model_prediction_swap(model, axes) if use_mirror else None  # left/right pairs
    if backend is not None and backend.name != "torch":
        if device.type != "cpu":
            raise BackendError(f"--backend {backend.name} is for CPU prediction, the device is {device.type}")
        predictor.network = make_backend(backend.name, predictor.network, backend.cache_dir, predictor.bf16)
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
    from .dicom import dicom_series, series_to_nifti

    p = Path(inputs)
    if p.is_dir() and not any(f.name.lower().endswith(IMAGE_ENDINGS) and not f.name.startswith(".")
                              for f in p.iterdir() if f.is_file()):
        if not dicom_series(p):
            raise FileNotFoundError(f"{p}: no image files ({', '.join(IMAGE_ENDINGS)}) and no DICOM series in this folder")
        if num_channels != 1:
            raise ValueError(f"{p}: the model takes {num_channels} channels; a DICOM series is one")
        case = p.resolve().name
        workdir.mkdir(parents=True, exist_ok=True)
        return {case: [str(series_to_nifti(p, workdir / f"{case}_0000.nii.gz", series_uid))]}
    if series_uid is not None:
        raise ValueError(f"{p}: --series-uid given but this is not a folder of DICOM files")
    return list_inputs(p, num_channels)


def predict(inputs: Union[str, Path], output_dir: Union[str, Path], model: Union[str, Path, TrainedModel],
            device: str = "cpu", mirror: Optional[bool] = None, step_size: float = 0.5,
            per_class: bool = False, *, roi_subset: Optional[Sequence[str]] = None, fast: bool = False,
            statistics: bool = False, preview: bool = False, save_probabilities: bool = False,
            series_uid: Optional[str] = None, fast_data_path: bool = True, skip_bad: bool = False,
            bf16: bool = False, output_type: str = "nifti", backend: Optional[BackendConfig] = None,
            threads: Optional[int] = None) -> List[Path]:
    """Segment every case of `inputs` into `output_dir/<case>.nii.gz`; returns the written label maps.

    Mirroring (test-time augmentation) defaults to on for CUDA and off for CPU. `roi_subset`: only
    those classes are written (others become background). `fast`: no overlap between windows, no
    mirroring, and the label map taken at the network's resolution and upsampled by nearest
    neighbour. Per case, optionally: `<case>/<class>.nii.gz` binary masks (`per_class`; an organ's
    mask includes the tumours it hosts), `<case>_statistics.json/.csv`, `<case>_preview.png`,
    `<case>.npz` probabilities (format in `inference.outputs`). `classes.json`/`.csv` give the ids.
    `bf16`: on CPU, the network in bfloat16 (faster on CPUs with native bf16; labels may differ at
    class borders). `output_type`: "nifti", "dicom-seg" (`<case>.dcm`, DICOM series input only; see
    `inference.dicom_seg`) or "both".
    """
    from tqdm import tqdm

    from .dicom_seg import case_outputs, seg_source

    seg_src = seg_source(inputs, output_type)
    m = model if isinstance(model, TrainedModel) else read_trained_model(model)
    names = label_names(m.dataset_json)
    roi = validate_roi(roi_subset, names, str(m.path))
    dev = torch.device(device)
    set_threads(threads)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = {n: i + 1 for i, n in enumerate(names)}
    kept = {n: ids[n] for n in roi} if roi else ids
    opts = OutputOptions(per_class, statistics, preview, save_probabilities)
    ending = m.dataset_json["file_ending"]
    remove_stale_temp(out)
    tmp = out / f".tmp-{os.getpid()}"
    written = []
    try:  # everything goes to a temp folder first: no half-written file under a final name
        tmp.mkdir(exist_ok=True)
        cases = resolve_inputs(inputs, len(m.dataset_json["channel_names"]), tmp / "inputs", series_uid)
        skipped = split_bad_cases(cases, skip_bad)
        predictor = make_predictor(m, dev, mirror, step_size, fast, fast_data_path, bf16, backend)
        predictor.roi_labels = sorted(kept.values()) if roi else None  # export only these classes
        for c in tqdm(sorted(cases), desc="cases", unit="case", disable=len(cases) < 2):
            res = predictor.predict_case(cases[c], probabilities=save_probabilities)
            seg = keep_classes(res.segmentation, kept) if roi else res.segmentation
            seg_tmp = tmp / f"{c}{ending}"
            predictor.write_segmentation(seg, str(seg_tmp), res.properties)
            if save_probabilities:
                write_probabilities(out / f"{c}.npz", res.probabilities, ["background", *names],
                                    list(range(len(names) + 1)), res.probability_geometry,
                                    _read_image(cases[c][0]))
            final = finish_case(c, seg_tmp, cases[c][0], kept, out, opts, ending)
            written.extend(case_outputs(final, seg_src, series_uid, kept, output_type, str(m.path)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_class_table(out, kept)
    write_skipped(out, skipped, skip_bad)
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
        raise ValueError(f"--threads must be at least 1, got {threads}")
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


def resolve_model(spec: Union[str, Path]) -> Union[Path, str]:
    """A model folder / checkpoint path of ours, or the zoo name of a released checkpoint.

    Returns a Path for models nnU-Net's predictor runs, a str (zoo name or file) for released
    checkpoints that need the direct-inference protocol."""
    from ..zoo import catalog, read_index
    from ..zoo.store import model_folder

    p = Path(spec)
    if p.is_dir():
        return p
    if p.is_file():
        try:
            read_trained_model(p)
            return p
        except ValueError as e:
            if "not an nnU-Net" not in str(e):
                raise
            return str(p)
    index = read_index()
    if str(spec) in index["models"]:
        return model_folder(str(spec))
    if str(spec) in index["checkpoints"] or str(spec) in catalog():
        return str(spec)
    raise FileNotFoundError(f"{spec}: no such model folder, checkpoint file or zoo name "
                            f"(imported: {', '.join(sorted(index['models']) + sorted(index['checkpoints'])) or 'none'})")


def predict_with_release(inputs: Union[str, Path], output_dir: Union[str, Path], name: str, device: str = "cpu",
                         per_class: bool = False, *, roi_subset: Optional[Sequence[str]] = None, fast: bool = False,
                         statistics: bool = False, preview: bool = False, save_probabilities: bool = False,
                         series_uid: Optional[str] = None, skip_bad: bool = False,
                         output_type: str = "nifti") -> List[Path]:
    """The paper's direct-inference protocol with a released checkpoint (zoo name or file) on every case.

    Same outputs and options as `predict`; `fast` lowers the window overlap from the protocol's 0.75
    to 0.25. Probabilities are not available (released heads give one sigmoid per class)."""
    from tqdm import tqdm

    from ..zoo import load_released, predict_released
    from .dicom_seg import case_outputs, seg_source

    seg_src = seg_source(inputs, output_type)
    if save_probabilities:
        raise ValueError(f"{name}: --save-probabilities is not available for released checkpoints")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(out)
    tmp = out / f".tmp-{os.getpid()}"
    opts = OutputOptions(per_class, statistics, preview, False)
    written, kept = [], {}
    try:
        tmp.mkdir(exist_ok=True)
        cases = resolve_inputs(inputs, 1, tmp / "inputs", series_uid)
        skipped = split_bad_cases(cases, skip_bad)
        model = load_released(name, map_location=device)
        names = list(getattr(model, "class_names", []) or [])
        roi = validate_roi(roi_subset, names, name) if names else None
        for case in tqdm(sorted(cases), desc="cases", unit="case", disable=len(cases) < 2):
            f = tmp / f"{case}.nii.gz"
            ids = predict_released(model, cases[case][0], f, device=device, overlap=0.25 if fast else None)
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
    write_skipped(out, skipped, skip_bad)
    return written


def _keep_in_file(seg_file: Path, class_ids: Mapping[str, int]) -> None:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(seg_file))
    arr = keep_classes(sitk.GetArrayFromImage(img), class_ids)
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(seg_file), True)
