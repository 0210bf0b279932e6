"""Case-level labels (`case_labels.csv`) and the images they name.

File format (next to the nnU-Net raw layout, `DatasetNNN_Name/case_labels.csv`; real users write
their own): UTF-8 CSV with a header naming at least the columns `case` and `subtype`, one row per
case; other columns are ignored. `case` is the case name as nnU-Net spells it (the image file
`imagesTr/<case>_0000.nii.gz`, or `<case>.nii.gz` in a folder without channel suffixes);
`subtype` is one of `SUBTYPES` (or a synonym, case-insensitive):

  none    lesion-free pancreas (synonyms: normal, lesion_free, no_lesion)
  pdac    pancreatic ductal adenocarcinoma (adenocarcinoma)
  cyst    pancreatic cyst (pancreatic_cyst, cystic_lesion)
  pannet  pancreatic neuro-endocrine tumour (pnet, pnet_tumor, neuroendocrine, net)

Every problem (missing column, empty or unknown sub-type, a case listed twice, a listed case with
no image) is collected and raised once as a ValueError whose first line names the file.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..synth.subtype_lesion import PANCREAS_LESION_SUBTYPES
from ..dataset.cases import list_inputs
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
#: Classifier classes in output order: lesion-free first, then the sub-types.
SUBTYPES: Tuple[str, ...] = ("none", *PANCREAS_LESION_SUBTYPES)
_SYNONYMS: Dict[str, str] = {
    "normal": "none", "lesion_free": "none", "no_lesion": "none", "healthy": "none",
    "adenocarcinoma": "pdac", "pancreatic_ductal_adenocarcinoma": "pdac",
    "pancreatic_cyst": "cyst", "cystic_lesion": "cyst",
    "pnet": "pannet", "pnet_tumor": "pannet", "neuroendocrine": "pannet", "net": "pannet",
}
MAX_LISTED = 5  # problems shown in one error


def canonical_subtype(name: str) -> Optional[str]:
    """The sub-type `name` stands for (case, spaces and hyphens ignored), or None if unknown."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return key if key in SUBTYPES else _SYNONYMS.get(key)


def read_case_labels(path: PathLike, subtypes: Sequence[str] = SUBTYPES) -> Dict[str, str]:
    """{case: sub-type} from a labels file; ValueError naming the file for every problem found."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such case labels file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: not a readable CSV file ({e})") from None
    if "case" not in header or "subtype" not in header:
        raise InputError(f"{path}: needs the columns 'case' and 'subtype', found: {', '.join(header) or 'none'}")
    if not rows:
        raise InputError(f"{path}: no cases (expected a header 'case,subtype' and one row per case)")
    labels: Dict[str, str] = {}
    problems: List[str] = []
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if not isinstance(v, list)}
        case, raw = row.get("case", ""), row.get("subtype", "")
        sub = canonical_subtype(raw) if raw else None
        if not case:
            problems.append(f"line {line}: empty case name")
        elif case in labels:
            problems.append(f"line {line}: case {case!r} is listed twice")
        elif sub is None or sub not in subtypes:
            problems.append(f"line {line}: case {case!r} has unknown sub-type {raw!r} "
                            f"(known: {', '.join(subtypes)})")
        else:
            labels[case] = sub
    _raise(path, problems)
    return labels


def _raise(path: Path, problems: List[str]) -> None:
    if problems:
        more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise InputError(f"{path}: {len(problems)} problem(s): {'; '.join(problems[:MAX_LISTED])}{more}")


def case_images(folder: PathLike) -> Dict[str, List[str]]:
    """{case: image files} of an images folder (nnU-Net's `<case>_0000.nii.gz` naming when every
    file follows it, else one case per file named by its stem), as `suprem_predict` reads it."""
    return list_inputs(folder, 1)


def match_images(labels_file: PathLike, labels: Mapping[str, str], folders: Sequence[PathLike],
                 require_all: bool = True) -> Dict[str, List[str]]:
    """{case: image files} for the labelled cases found in `folders`. With `require_all`, a labelled
    case without an image is an error naming the labels file (all such cases are counted)."""
    images: Dict[str, List[str]] = {}
    for folder in folders:
        if Path(folder).is_dir():
            images.update(case_images(folder))
    missing = sorted(c for c in labels if c not in images)
    if missing and require_all:
        where = " or ".join(str(f) for f in folders)
        _raise(Path(labels_file), [f"case {c!r} has no image in {where}" for c in missing])
    return {c: images[c] for c in labels if c in images}


def dataset_cases(raw_folder: PathLike, labels_file: Optional[PathLike] = None
                  ) -> Tuple[Dict[str, str], Dict[str, List[str]], Dict[str, Optional[str]]]:
    """(labels, images, label maps) of the training cases of a raw dataset: the cases of
    `labels_file` (default `<raw>/case_labels.csv`) that have an image in imagesTr. Cases of imagesTs
    listed in the labels file are left out (they are the test set); a listed case in neither folder
    is an error. Label maps (labelsTr/<case>.nii.gz, used to centre the region of interest) are None
    where absent."""
    raw = Path(raw_folder)
    labels_file = Path(labels_file) if labels_file is not None else raw / "case_labels.csv"
    labels = read_case_labels(labels_file)
    match_images(labels_file, labels, [raw / "imagesTr", raw / "imagesTs"])  # every listed case has an image
    train_images = match_images(labels_file, labels, [raw / "imagesTr"], require_all=False)
    if not train_images:
        raise InputError(f"{labels_file}: none of its cases has an image in {raw / 'imagesTr'}")
    seg = {c: (str(raw / "labelsTr" / f"{c}.nii.gz") if (raw / "labelsTr" / f"{c}.nii.gz").is_file() else None)
           for c in train_images}
    return {c: labels[c] for c in train_images}, train_images, seg
