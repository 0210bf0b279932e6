"""Preprocess a dataset with a plans file, resolving the plans' reader/writer and resampling ourselves.

Plans with nnunetv2's own reader and resampling run the configuration's nnunetv2 preprocessor.
Plans naming ours (SuPreM presets: RAS arrays, origin-aligned resampling) run nnunetv2's
`DefaultPreprocessor` through `SupremPreprocessor`, whose only change is to handle cases with
`SupremPlansManager` (and its configuration manager). A configuration counts as complete only with
its completion marker (manifest.py), written last; `ensure_preprocessed` redoes what the raw data
changed since.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import List, Sequence, Union

from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from .. import paths
from .fast import as_fast_configuration
from .plans_manager import SupremPlansManager, as_suprem
from ..dataset.raw import atomic_write_bytes, copy_annotated_classes
from . import manifest as mf
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)
SERIAL_CASES = 4  # up to this many cases to preprocess: in this process, without a worker pool


#: set to "nnunet" to preprocess plans naming only nnU-Net code with nnU-Net's own DefaultPreprocessor
#: (scipy/skimage resampling) instead of SupremPreprocessor (torch resampling), for comparison
PREPROCESSOR_ENV = "SUPREM_PREPROCESSOR"


class SupremPreprocessor(DefaultPreprocessor):
    """nnunetv2's DefaultPreprocessor handling each case with our plans and configuration managers (our
    reader/writer and resampling functions; nnU-Net's default resampling computed with torch,
    `fast.FastConfigurationManager`)."""

    def run_case(self, image_files: List[str], seg_file: Union[str, None], plans_manager: PlansManager,
                 configuration_manager: ConfigurationManager, dataset_json: Union[dict, str]):
        return super().run_case(image_files, seg_file, as_suprem(plans_manager),
                                as_fast_configuration(configuration_manager), dataset_json)



def preprocessed_cases(data_dir) -> List[str]:
    """Sorted case ids of an nnU-Net preprocessed data folder (one `<case>.pkl` per case; none if absent)."""
    data_dir = Path(data_dir)
    return sorted(p.name[: -len(".pkl")] for p in data_dir.glob("*.pkl")) if data_dir.is_dir() else []

def complete_cases(data_dir: Path) -> List[str]:
    """Cases of a preprocessed folder that were written completely. nnU-Net writes a case's arrays,
    then its .pkl (in place, not atomically): a .pkl that unpickles marks a complete case, a
    truncated one (a killed run) does not."""
    done = []
    for p in sorted(Path(data_dir).glob("*.pkl")):
        try:
            with open(p, "rb") as f:
                pickle.load(f)
        except Exception:  # truncated or damaged: pickle raises EOFError, UnpicklingError, ValueError, ...
            log.info("%s: unreadable, the case will be preprocessed again", p)
            continue
        done.append(p.name[: -len(".pkl")])
    return done


def _preprocessor(pm: SupremPlansManager, configuration: str, plans_file: Path):
    """The preprocessor of `configuration`: SupremPreprocessor (our reader/writer and resampling, nnU-Net's
    default resampling computed with torch) for DefaultPreprocessor configurations; nnU-Net's own for
    other preprocessors of plans naming only nnU-Net code, or with SUPREM_PREPROCESSOR=nnunet."""
    cm = pm.get_configuration(configuration)
    if not pm.names_own_code:
        if cm.preprocessor_class is not DefaultPreprocessor or os.environ.get(PREPROCESSOR_ENV) == "nnunet":
            return cm.preprocessor_class(verbose=False)
        return SupremPreprocessor(verbose=False)
    pm.image_reader_writer_class  # raises ValueError for a reader that cannot be imported
    cm.resampling_fn_data, cm.resampling_fn_seg  # raise ValueError for functions that cannot be imported
    if cm.preprocessor_class is not DefaultPreprocessor:
        raise InputError(f"{plans_file}: configuration {configuration!r} uses preprocessor "
                         f"{cm.preprocessor_class.__name__}; plans with reader {pm.plans['image_reader_writer']} "
                         "support DefaultPreprocessor only")
    return SupremPreprocessor(verbose=False)


def _remove_case(data_dir: Path, case: str) -> None:
    for f in (f"{case}.pkl", f"{case}.b2nd", f"{case}_seg.b2nd", f"{case}.npz", f"{case}.npy", f"{case}_seg.npy"):
        (data_dir / f).unlink(missing_ok=True)


def sync_gt_segmentations(name: str, cases: dict, file_ending: str) -> None:
    """The ground truth in its raw geometry under `gt_segmentations`, for nnU-Net's validation (as
    nnunetv2's preprocess_dataset does), copied atomically; a copy older than its label is renewed."""
    gt = paths.preprocessed_root() / name / "gt_segmentations"
    gt.mkdir(parents=True, exist_ok=True)
    for case, files in cases.items():
        src, dst = Path(files["label"]), gt / f"{case}{file_ending}"
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            tmp = dst.with_name(f".tmp-{os.getpid()}-{dst.name}")
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)


def ensure_preprocessed(dataset: str, plans_identifier: str, configuration: str, num_processes: int = 2) -> bool:
    """Make the preprocessed `configuration` of `dataset` (full name) match its raw data, as the
    completion marker's manifest tells (manifest.py): no marker (a killed or an old run), other
    plans or another dataset.json -> every case is preprocessed again; otherwise only the cases
    whose image or label files changed (e.g. a revision imported by `suprem_review import`) or are
    new, with one log line naming them; cases gone from the raw dataset are removed. Also refreshes
    the preprocessed `dataset.json`, `annotated_classes.json` and `gt_segmentations`. Returns
    whether anything was preprocessed."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets


    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun rank 0 prepares the data
        return False
    raw, pre = paths.raw_root() / dataset, paths.preprocessed_root() / dataset
    plans_file = pre / f"{plans_identifier}.json"
    if not plans_file.is_file():
        raise MissingFileError(f"{plans_file}: no such plans; run suprem_plan_and_preprocess first")
    pm = SupremPlansManager(str(plans_file))
    data_dir = pre / pm.get_configuration(configuration).data_identifier
    if not (raw / "dataset.json").is_file():
        if mf.read_marker(data_dir) is not None:
            log.info("%s: raw dataset absent; using the preprocessed data as they are", raw)
            return False
        raise MissingFileError(f"{data_dir}: preprocessing never completed (no {mf.marker_path(data_dir).name}) "
                                f"and the raw dataset {raw} is not there to preprocess it again")
    dataset_json = json.loads((raw / "dataset.json").read_text())
    cases = get_filenames_of_train_images_and_targets(str(raw), dataset_json)
    new = mf.raw_manifest(raw, cases, pm.plans, configuration)
    present = preprocessed_cases(data_dir)
    state = mf.compare(mf.read_marker(data_dir), new, present)
    raw_json = (raw / "dataset.json").read_bytes()
    if not (pre / "dataset.json").is_file() or (pre / "dataset.json").read_bytes() != raw_json:
        atomic_write_bytes(pre / "dataset.json", raw_json)  # nnU-Net's preprocessor reads this copy
    copy_annotated_classes(raw, pre)  # training reads this copy
    if state.up_to_date:
        log.info("%s / %s: preprocessed data are up to date", dataset, configuration)
        sync_gt_segmentations(dataset, cases, dataset_json["file_ending"])
        return False
    pre_proc = _preprocessor(pm, configuration, plans_file)
    pre_proc.show_progress_bar = False
    mf.remove_marker(data_dir)  # from here on a killed run leaves the folder incomplete
    redo_all = state.redo_all or len(state.changed) * 2 >= max(len(cases), 1) or not data_dir.is_dir()
    todo = sorted(cases) if redo_all else state.changed
    if redo_all:
        log.info("preprocessing %s / %s with %s: all %d cases (%s)", dataset, configuration,
                 pm.plans["image_reader_writer"], len(cases), state.describe())
    else:
        log.info("preprocessing %s / %s again for %s", dataset, configuration, state.describe())
    if redo_all and len(todo) > SERIAL_CASES:  # nnU-Net's run: clears the folder, a pool of workers
        pre_proc.run(convert_dataset_name_to_id(dataset), configuration, plans_identifier,
                     num_processes=int(num_processes))
    else:  # a few cases: in this process (a worker pool costs seconds to start)
        if redo_all:
            shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        pm_nn = PlansManager(str(plans_file))
        cm = pm_nn.get_configuration(configuration)
        for case in state.removed:
            _remove_case(data_dir, case)
        for case in todo:
            _remove_case(data_dir, case)
            pre_proc.run_case_save(str(data_dir / case), cases[case]["images"], cases[case]["label"], pm_nn, cm,
                                   dataset_json)
    mf.write_marker(data_dir, new)
    sync_gt_segmentations(dataset, cases, dataset_json["file_ending"])
    return True


def preprocess_dataset(dataset_id: int, plans_identifier: str, configurations: Sequence[str],
                       num_processes: Sequence[int]) -> None:
    """nnunetv2's `preprocess_dataset` (also for plans whose reader/writer is one of ours), redoing
    only what the raw data changed since the last completed run (`ensure_preprocessed`)."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    name = convert_id_to_dataset_name(dataset_id)
    for c, n in zip(configurations, num_processes):
        ensure_preprocessed(name, plans_identifier, c, int(n))
