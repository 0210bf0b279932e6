"""Predict with a trained model on CT files, writing NIfTI in each input's exact geometry.

Built on nnunetv2's nnUNetPredictor, initialised from our own checkpoint (read with
weights_only=True) instead of nnunetv2's trainer-class search.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..dataset.raw import atomic_write_json, label_names
from ..labels import canonical, host_of
from ..training.checkpoint import TrainedModel, read_trained_model

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
    """Raise ValueError naming the first file SimpleITK cannot read as a 3D image."""
    import SimpleITK as sitk

    for f in files:
        try:
            r = sitk.ImageFileReader()
            r.SetFileName(str(f))
            r.ReadImageInformation()
        except RuntimeError as e:
            raise ValueError(f"{f}: cannot be read as an image ({str(e).strip().splitlines()[-1][:120]})") from None
        if r.GetDimension() != 3:
            raise ValueError(f"{f}: expected a 3D image, got {r.GetDimension()}D")


def build_network(model: TrainedModel) -> torch.nn.Module:
    """The model's network (deep supervision off) with its weights loaded."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(model.plans)
    cm = pm.get_configuration(model.configuration)
    n_in = determine_num_input_channels(pm, cm, model.dataset_json)
    n_out = pm.get_label_manager(model.dataset_json).num_segmentation_heads
    net = nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, enable_deep_supervision=False)
    net.load_state_dict(model.state_dict)
    return net


def predict(inputs: Union[str, Path], output_dir: Union[str, Path], model: Union[str, Path, TrainedModel],
            device: str = "cpu", mirror: Optional[bool] = None, step_size: float = 0.5,
            per_class: bool = False) -> List[Path]:
    """Segment every case of `inputs` into `output_dir/<case>.nii.gz`; returns the written files.

    Mirroring (test-time augmentation) defaults to on for CUDA and off for CPU.
    With `per_class`, also `output_dir/<case>/<class>.nii.gz` binary masks; an organ's mask then
    includes the voxels of tumours it hosts (e.g. liver includes liver_tumor).
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from ..preprocessing.plans_manager import SupremPlansManager as PlansManager  # resolves a preset's RAS reader

    m = model if isinstance(model, TrainedModel) else read_trained_model(model)
    dev = torch.device(device)
    n_channels = len(m.dataset_json["channel_names"])
    cases = list_inputs(inputs, n_channels)
    check_readable([f for fl in cases.values() for f in fl])
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    mirror, axes = mirroring(mirror, dev.type, m.mirror_axes)
    pm = PlansManager(m.plans)
    predictor = nnUNetPredictor(tile_step_size=step_size, use_gaussian=True, use_mirroring=mirror,
                                perform_everything_on_device=dev.type == "cuda", device=dev, verbose=False,
                                allow_tqdm=True)
    predictor.manual_initialization(build_network(m).to(dev), pm, pm.get_configuration(m.configuration),
                                    [m.state_dict], m.dataset_json, m.trainer_name, axes)
    ending = m.dataset_json["file_ending"]
    names = sorted(cases)
    tmp = out / f".tmp-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    try:  # predict into a temp folder, then move: no half-written prediction under the final name
        predictor.predict_from_files_sequential([cases[c] for c in names], [str(tmp / c) for c in names],
                                                save_probabilities=False, overwrite=True)
        written = []
        for c in names:
            os.replace(tmp / f"{c}{ending}", out / f"{c}{ending}")
            written.append(out / f"{c}{ending}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_json(out / "dataset.json", {"labels": m.dataset_json["labels"], "file_ending": ending,
                                             "model": str(m.path)})
    if per_class:
        ids = {n: i + 1 for i, n in enumerate(label_names(m.dataset_json))}
        for f in written:
            write_class_masks(f, ids, out / case_name(f))
    log.info("wrote %d prediction(s) to %s", len(written), out)
    return written


def mirroring(requested: Optional[bool], device_type: str, allowed_axes: Optional[Sequence[int]]):
    """(use mirroring, axes) for test-time mirroring: default on for CUDA, off otherwise; the model's
    stored axes are passed unchanged, and a model trained without mirroring (no axes) never mirrors."""
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
                         per_class: bool = False) -> List[Path]:
    """The paper's direct-inference protocol with a released checkpoint (zoo name or file) on every case."""
    from ..zoo import load_released, predict_released

    cases = list_inputs(inputs, 1)
    check_readable([f for fl in cases.values() for f in fl])
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_released(name, map_location=device)
    written = []
    for case in sorted(cases):
        f = out / f"{case}.nii.gz"
        ids = predict_released(model, cases[case][0], f, device=device)
        written.append(f)
        if per_class:
            write_class_masks(f, ids, out / case)
    return written


def write_class_masks(seg_file: Union[str, Path], class_ids: Mapping[str, int], folder: Union[str, Path]) -> None:
    """One binary uint8 mask per class {name: label id}, same geometry as `seg_file`; organs include
    the voxels of the tumours they host."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(seg_file))
    arr = sitk.GetArrayFromImage(img)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    canon = {canonical(n): int(i) for n, i in class_ids.items()}
    for name, lid in canon.items():
        mask = arr == lid
        for other, oid in canon.items():
            if host_of(other) == name:
                mask |= arr == oid
        m = sitk.GetImageFromArray(mask.astype(np.uint8))
        m.CopyInformation(img)
        tmp = folder / f".tmp-{name}.nii.gz"
        sitk.WriteImage(m, str(tmp), useCompression=True)
        os.replace(tmp, folder / f"{name}.nii.gz")
