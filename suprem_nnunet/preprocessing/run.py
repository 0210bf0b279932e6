"""Preprocess a dataset with a plans file, resolving the plans' reader/writer and resampling ourselves.

Plans with nnunetv2's own reader and resampling go to nnunetv2's `preprocess_dataset` unchanged. Plans
naming ours (SuPreM presets: RAS arrays, origin-aligned resampling) run nnunetv2's
`DefaultPreprocessor.run` through `SupremPreprocessor`, whose only change is to handle cases with `SupremPlansManager` (and its
configuration manager).
"""
from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path
from typing import List, Sequence, Union

from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from .. import paths
from .plans_manager import SupremPlansManager, as_suprem, as_suprem_configuration

log = logging.getLogger(__name__)


class SupremPreprocessor(DefaultPreprocessor):
    """nnunetv2's DefaultPreprocessor handling each case with our plans and configuration managers (our
    reader/writer and resampling functions)."""

    def run_case(self, image_files: List[str], seg_file: Union[str, None], plans_manager: PlansManager,
                 configuration_manager: ConfigurationManager, dataset_json: Union[dict, str]):
        return super().run_case(image_files, seg_file, as_suprem(plans_manager),
                                as_suprem_configuration(configuration_manager), dataset_json)


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


def preprocess_dataset(dataset_id: int, plans_identifier: str, configurations: Sequence[str],
                       num_processes: Sequence[int]) -> None:
    """nnunetv2's `preprocess_dataset`, also for plans whose reader/writer is one of ours."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset as nnunet_preprocess
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    name = convert_id_to_dataset_name(dataset_id)
    plans_file = paths.preprocessed_root() / name / f"{plans_identifier}.json"
    pm = SupremPlansManager(str(plans_file))
    if not pm.names_own_code:
        nnunet_preprocess(dataset_id, plans_identifier, tuple(configurations), list(num_processes))
        return
    pm.image_reader_writer_class  # raises ValueError for a reader that cannot be imported
    for c, n in zip(configurations, num_processes):
        cm = pm.get_configuration(c)
        cm.resampling_fn_data, cm.resampling_fn_seg  # raise ValueError for functions that cannot be imported
        if cm.preprocessor_class is not DefaultPreprocessor:
            raise ValueError(f"{plans_file}: configuration {c!r} uses preprocessor {cm.preprocessor_class.__name__}; "
                             f"plans with reader {pm.plans['image_reader_writer']} support DefaultPreprocessor only")
        log.info("preprocessing %s / %s with %s", name, c, pm.plans["image_reader_writer"])
        pre = SupremPreprocessor(verbose=False)
        pre.show_progress_bar = False
        pre.run(dataset_id, c, plans_identifier, num_processes=int(n))
    # the ground truth in its raw geometry, for nnU-Net's validation (as nnunetv2's preprocess_dataset does)
    raw = paths.raw_root() / name
    dataset_json = json.loads((raw / "dataset.json").read_text())
    gt = paths.preprocessed_root() / name / "gt_segmentations"
    gt.mkdir(parents=True, exist_ok=True)
    for case, files in get_filenames_of_train_images_and_targets(str(raw), dataset_json).items():
        src, dst = Path(files["label"]), gt / f"{case}{dataset_json['file_ending']}"
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            shutil.copy2(src, dst)
