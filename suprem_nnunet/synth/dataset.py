"""Write phantom cases as an nnU-Net raw dataset (layer 2 over `phantom.py`)."""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from .. import paths
from ..dataset.raw import dataset_name, write_annotated_classes, write_dataset_json, write_image
from ..labels.licences import SYNTHETIC
from ..labels import canonical_labels
from .phantom import PHANTOM_CLASSES, PhantomGenerator
from .subtype_lesion import PANCREAS_LESION_SUBTYPES, SUBTYPE_SEG_CLASSES, check_subtype_options
from .profiles import SourceProfile
from ..dataset.raw import atomic_write_bytes
from ..configs import as_config
from ..errors import InputError

log = logging.getLogger(__name__)


def case_seed(seed: int, index: int, salt: Optional[str] = None) -> int:
    """Seed of case `index` of a dataset made with `seed`: `seed * 100003 + index`, or, with a
    `salt` (a source profile's name), a hash of all three, so two profiles never share a case."""
    if salt is None:
        return seed * 100003 + index
    return zlib.crc32(f"{salt}:{seed}:{index}".encode())


@dataclass
class PhantomDatasetConfig:
    """A raw dataset of synthetic CT phantoms (`make_phantom_dataset`); fields described there."""

    dataset_id: int
    name: str
    classes: Sequence[str]
    num_train: int = 8
    num_test: int = 4
    shape: Sequence[int] = (64, 64, 64)
    spacing: Sequence[float] = (5.0, 5.0, 5.0)
    orientation: str = "LPS"
    seed: int = 0
    raw_root: Optional[Path] = None
    progress: bool = True
    noise_hu: float = 12.0
    hu_offsets: Optional[Mapping[str, float]] = None
    slice_thickness: Optional[float] = None
    tumours_in_host: bool = True
    seed_salt: Optional[str] = None
    source: Optional[str] = None
    description: str = "suprem-nnunet synthetic CT phantoms"
    synth_info: Optional[Mapping[str, Any]] = None
    pancreas_lesions: Optional[Sequence[str]] = None
    difficulty: float = 0.5


def make_phantom_dataset(config: Union[PhantomDatasetConfig, int], *args, **kwargs) -> Path:
    """Write `DatasetNNN_name` with `num_train` + `num_test` phantoms labelling `classes`.

    Structures not in `classes` are still drawn in the image but labelled background, as in a
    real dataset that does not annotate them (with `tumours_in_host`, an unlabelled tumour counts
    as its organ, as real organ labels include their lesions; the default). Case i uses seed `case_seed(seed, i, seed_salt)`, so a dataset is reproducible
    and the train/test split never shares a case. `noise_hu`, `hu_offsets` and `slice_thickness`
    go to the generator; `source` tags the cases (dataset.json `case_sources`, kept by merge).
    `pancreas_lesions` (one sub-type or "none" per case, train cases first) draws pancreatic lesions
    of those sub-types at `difficulty` and writes `case_labels.csv`; `classes` may then name the
    sub-types' segmentation classes (`SUBTYPE_SEG_CLASSES`). Takes a PhantomDatasetConfig, or its
    fields as arguments (`make_phantom_dataset(dataset_id, name, classes, ...)`).
    """
    cfg = as_config(PhantomDatasetConfig, config, args, kwargs)
    names = canonical_labels(cfg.classes)
    drawable = PHANTOM_CLASSES + (tuple(SUBTYPE_SEG_CLASSES.values()) if cfg.pancreas_lesions is not None else ())
    unknown = [c for c in names if c not in drawable]
    if unknown:
        raise InputError(f"the phantom does not draw {unknown}; it draws: {', '.join(PHANTOM_CLASSES)}")
    if cfg.num_train < 1 or cfg.num_test < 0:
        raise InputError("need at least one training case and a non-negative number of test cases")
    if cfg.seed < 0:
        raise InputError(f"seed must be >= 0, got {cfg.seed}")
    if cfg.pancreas_lesions is not None:
        if len(cfg.pancreas_lesions) != cfg.num_train + cfg.num_test:
            raise InputError(f"{len(cfg.pancreas_lesions)} pancreatic lesion sub-types for "
                             f"{cfg.num_train + cfg.num_test} cases")
        for lesion in set(cfg.pancreas_lesions):
            check_subtype_options(lesion, cfg.difficulty)
    folder = Path(cfg.raw_root or paths.raw_root()) / dataset_name(cfg.dataset_id, cfg.name)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    prefix = cfg.name.lower()
    cases = [(f"{prefix}_{i:03d}", "Tr" if i < cfg.num_train else "Ts")
             for i in range(cfg.num_train + cfg.num_test)]
    seeds = {}
    for i, (case, split) in enumerate(tqdm(cases, desc=f"phantoms {folder.name}", disable=not cfg.progress)):
        seeds[case] = case_seed(cfg.seed, i, cfg.seed_salt)
        lesion = ({} if cfg.pancreas_lesions is None
                  else {"pancreas_lesion": cfg.pancreas_lesions[i], "difficulty": cfg.difficulty})
        ph = PhantomGenerator(seeds[case])(cfg.shape, cfg.spacing, cfg.orientation, noise_hu=cfg.noise_hu,
                                           hu_offsets=cfg.hu_offsets, slice_thickness=cfg.slice_thickness, **lesion)
        geo = (ph.spacing, ph.origin, ph.direction)
        write_image(folder / f"images{split}" / f"{case}_0000.nii.gz", ph.image, *geo)
        write_image(folder / f"labels{split}" / f"{case}.nii.gz", ph.label_map(names, cfg.tumours_in_host), *geo)
    write_annotated_classes(folder, {c: names for c, _ in cases})
    synth_info = dict(cfg.synth_info or {})
    if cfg.pancreas_lesions is not None:
        write_case_labels(folder / CASE_LABELS_FILE, {c: cfg.pancreas_lesions[i] for i, (c, _) in enumerate(cases)})
        synth_info["pancreas_lesion_difficulty"] = cfg.difficulty
    extra: Dict[str, Any] = {}
    if cfg.source is not None:
        extra["case_sources"] = {c: {"source": cfg.source, "source_id": f"seed-{seeds[c]}", "split": "train",
                                     "image_sha1": None} for c, split in cases if split == "Tr"}
    write_dataset_json(folder, names, cfg.num_train, name=cfg.name, description=cfg.description,
                       reference="generated by suprem_synth", licence=SYNTHETIC.licence.id,
                       licences={cfg.source or SYNTHETIC.source: {k: v for k, v in SYNTHETIC.to_dict().items()
                                                                  if k != "source"}},
                       synth={"seed": cfg.seed, "shape": list(cfg.shape), "spacing": list(cfg.spacing),
                              "orientation": cfg.orientation, **synth_info}, **extra)
    log.info("wrote %s (%d train, %d test)", folder, cfg.num_train, cfg.num_test)
    return folder


def make_profile_dataset(dataset_id: int, profile: SourceProfile, num_train: int = 8, num_test: int = 4,
                         seed: int = 0, name: Optional[str] = None, shape: Optional[Sequence[int]] = None,
                         spacing: Optional[Sequence[float]] = None, orientation: str = "LPS",
                         raw_root: Optional[Path] = None, progress: bool = True) -> Path:
    """Write a phantom dataset that mimics a real source (`profiles.py`): its classes only, its
    spacing, slice thickness, contrast phase and noise. `shape`/`spacing` override the profile's;
    the name defaults to the profile's, so datasets of different profiles merge without id clashes."""
    return make_phantom_dataset(
        dataset_id, name or profile.dataset_name, profile.classes, num_train, num_test,
        shape=tuple(shape or profile.shape), spacing=tuple(spacing or profile.spacing), orientation=orientation,
        seed=seed, raw_root=raw_root, progress=progress, noise_hu=profile.noise_hu, hu_offsets=profile.hu_offsets,
        slice_thickness=profile.slice_thickness, tumours_in_host=True, seed_salt=profile.name,
        source=f"phantom_{profile.name}", description=f"suprem-nnunet phantoms like {profile.source}: "
                                                      f"{profile.description}",
        synth_info={"profile": profile.name, "phase": profile.phase, "slice_thickness": profile.slice_thickness,
                    "noise_hu": profile.noise_hu})


#: Case-level labels next to the nnU-Net raw layout: a CSV with a header `case,subtype`, one row per
#: case (read and validated by `suprem_nnunet.classification.data`).
CASE_LABELS_FILE = "case_labels.csv"


def write_case_labels(path: Path, labels: Mapping[str, str]) -> None:
    """`case,subtype` rows (written to a temporary name, then renamed)."""
    text = "case,subtype\n" + "".join(f"{c},{s}\n" for c, s in labels.items())
    atomic_write_bytes(path, text.encode())


def balanced_subtypes(n: int, seed: int, subtypes: Sequence[str] = ("none", *PANCREAS_LESION_SUBTYPES)) -> list:
    """`n` sub-types, as equal in number as `n` allows, in a seeded random order."""
    out = [subtypes[i % len(subtypes)] for i in range(n)]
    np.random.default_rng([seed, 7]).shuffle(out)
    return out


def make_subtype_dataset(dataset_id: int, name: str = "PancreasSubtypes", num_train: int = 24, num_test: int = 24,
                         difficulty: float = 0.5, label_as: str = "subtype", shape: Sequence[int] = (48, 48, 48),
                         spacing: Sequence[float] = (5.0, 5.0, 5.0), seed: int = 0, raw_root: Optional[Path] = None,
                         progress: bool = True) -> Path:
    """Phantoms with pancreatic lesions of the three sub-types plus lesion-free cases (balanced in
    train and in test separately) and their `case_labels.csv`. The label maps hold the pancreas and
    the lesion: as its sub-type's novel class (`label_as="subtype"`, the segmentation route's
    target) or as `pancreas_tumor` (`"tumor"`: a pre-training set that knows lesions, not sub-types)."""
    if label_as not in ("subtype", "tumor"):
        raise InputError(f"label_as must be 'subtype' or 'tumor', got {label_as!r}")
    lesions = balanced_subtypes(num_train, seed) + balanced_subtypes(num_test, seed + 1)
    classes = ["pancreas", *(SUBTYPE_SEG_CLASSES[s] for s in PANCREAS_LESION_SUBTYPES)] if label_as == "subtype" \
        else ["pancreas", "pancreas_tumor"]
    return make_phantom_dataset(dataset_id, name, classes, num_train, num_test, shape, spacing, seed=seed,
                                raw_root=raw_root, progress=progress, pancreas_lesions=lesions,
                                difficulty=difficulty,
                                description="suprem-nnunet phantoms with pancreatic lesions of three sub-types")
