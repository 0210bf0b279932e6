"""Shared converter machinery: a case found on disk, the base converter, file pairing helpers.

A converter knows one source's layout: `discover` lists its cases (image, label, split),
`load` reads one case and returns the CT and its unified label array, both reoriented to LPS.
Everything else (writing, resuming, reports, workers) lives in `runner.py`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from suprem_nnunet.labels.sources import SOURCE_LABELS, LabelMap

from .errors import BadInputError, ConversionError
from .imageio import align_to, label_array, natural_key, read_image, to_lps
from .labelspace import LabelMapper
from .sides import Geometry
from suprem_nnunet.errors import InputError

NII = (".nii.gz", ".nii")


@dataclass
class SourceCase:
    """One case as found on disk."""

    case_id: str  # output case id, '<prefix>_<source id>'
    source_id: str  # the id in the source's own naming
    image: Optional[Path]  # image file or DICOM folder
    label: Optional[Path] = None  # label file / mask folder; None: unlabelled (goes to imagesTs)
    split: str = "train"  # the source's own split name
    problem: Optional[Tuple[str, str]] = None  # (path, problem) found while pairing files
    skip_reason: Optional[str] = None  # a documented exclusion (not an error), e.g. MRI in AMOS
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedCase:
    """A case read and mapped: CT and unified labels on the same LPS grid."""

    image: sitk.Image
    label: Optional[np.ndarray]  # (z, y, x) unified ids, or None for an unlabelled case
    annotated: List[str]  # unified classes really annotated in this case


class Converter:
    """Base converter for sources that store one image file and one label file per case."""

    key: str = ""  # registry key; also the source tag of every converted case
    prefix: str = ""  # case id prefix
    annotation: str = "full"  # 'full': every source class annotated; 'present': classes in the file
    #: Positive-only classes: their labelled voxels are right, but the source marks only some of
    #: them (FLARE23 lesions), so they are never 'annotated' and background is not negative for them.
    partial_classes: Tuple[str, ...] = ()
    partial_note: str = ""  # why, for the conversion report
    option_names: Tuple[str, ...] = ()

    def __init__(self, options: Optional[Mapping[str, Any]] = None) -> None:
        options = dict(options or {})
        unknown = sorted(k for k, v in options.items() if v is not None and k not in self.option_names)
        if unknown:
            raise ConversionError(f"source {self.key!r} takes no option(s) {unknown}; "
                                  f"it takes: {list(self.option_names) or 'none'}")
        self.options = {k: v for k, v in options.items() if v is not None}

    # ------------------------------------------------------------------ label space
    @property
    def label_map(self) -> LabelMap:
        return SOURCE_LABELS[self.key]

    @cached_property
    def mapper(self) -> LabelMapper:
        return LabelMapper(self.label_map)

    @property
    def classes(self) -> List[str]:
        """Unified classes of the converted dataset, in label-id order."""
        return self.mapper.classes

    # ------------------------------------------------------------------ discovery
    def discover(self, root: Path) -> List[SourceCase]:
        raise NotImplementedError

    # ------------------------------------------------------------------ reading
    def load_image(self, case: SourceCase) -> sitk.Image:
        return read_image(case.image)

    def load_label(self, case: SourceCase, image: sitk.Image) -> sitk.Image:
        """Source label image on the image's grid (values are source ids)."""
        return align_to(read_image(case.label), image, case.label, case.image)

    def source_array(self, case: SourceCase, label: sitk.Image) -> np.ndarray:
        return label_array(label, case.label, [k for k in self.label_map])

    def finish(self, out: np.ndarray, src: np.ndarray, geo: Geometry, image: np.ndarray) -> np.ndarray:
        """Hook for source-specific label fixes after mapping (default: none)."""
        return out

    def annotated(self, case: SourceCase, src: np.ndarray, out: np.ndarray) -> List[str]:
        if self.annotation == "full":
            return [c for c in self.classes if c not in self.partial_classes]
        present = np.flatnonzero(np.bincount(out.ravel(), minlength=len(self.classes) + 1))
        return [self.classes[i - 1] for i in present if i > 0 and self.classes[i - 1] not in self.partial_classes]

    def load(self, case: SourceCase) -> LoadedCase:
        image = self.load_image(case)
        if case.label is None:
            return LoadedCase(to_lps(image), None, [])
        label = to_lps(self.load_label(case, image))
        image = to_lps(image)
        src = self.source_array(case, label)
        img = sitk.GetArrayViewFromImage(image)
        geo = Geometry.of(image)
        out = self.finish(self.mapper.apply(src, geo, img), src, geo, img)
        return LoadedCase(image, out, self.annotated(case, src, out))


# ---------------------------------------------------------------------------------------- helpers
def strip_ext(name: str) -> str:
    for ext in (".nii.gz", ".nii", ".mha", ".nrrd", ".dcm", ".png"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def list_files(folder: Path, pattern: str = r".*", exts: Sequence[str] = NII) -> Dict[str, Path]:
    """{stem: path} of the files in `folder` whose stem fully matches `pattern` (macOS '._*' and
    other hidden files ignored). Raises if a stem appears twice (e.g. '.nii' and '.nii.gz')."""
    out: Dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir(), key=natural_key):
        if p.name.startswith(".") or not p.is_file() or not any(p.name.lower().endswith(e) for e in exts):
            continue
        stem = strip_ext(p.name)
        if not re.fullmatch(pattern, stem):
            continue
        if stem in out:
            raise BadInputError(p, f"duplicate of {out[stem].name}")
        out[stem] = p
    return out


def pair(images: Mapping[str, Path], labels: Mapping[str, Path], prefix: str, split: str = "train",
         labels_required: bool = True, case_id=None) -> List[SourceCase]:
    """Cases from {id: image} and {id: label}; a missing partner becomes a case with a problem."""
    cases = []
    for sid in sorted(set(images) | set(labels), key=lambda s: natural_key(Path(s))):
        cid = case_id(sid) if case_id else f"{prefix}_{sid}"
        img, lab = images.get(sid), labels.get(sid)
        c = SourceCase(cid, sid, img, lab, split)
        if img is None:
            c.problem = (str(lab), "label has no matching image")
        elif lab is None and labels_required:
            c.problem = (str(img), "image has no matching label")
        cases.append(c)
    return cases


def require_dir(root: Path, *names: str) -> Path:
    """The first of `root/name` that is a folder (or `root` itself when no names are given)."""
    for n in names or ("",):
        p = root / n if n else root
        if p.is_dir():
            return p
    raise BadInputError(root, f"expected folder {' or '.join(names) if names else ''} not found".replace("  ", " "))


def digits(s: str) -> str:
    """The last run of digits in `s` ('img0001' -> '0001')."""
    m = re.findall(r"\d+", s)
    if not m:
        raise InputError(f"no number in {s!r}")
    return m[-1]


def dedupe(cases: Iterable[SourceCase]) -> List[SourceCase]:
    """Raise if two cases would get the same output id."""
    seen: Dict[str, SourceCase] = {}
    out = []
    for c in cases:
        if c.case_id in seen:
            raise BadInputError(c.image or c.label, f"case id {c.case_id} also used by {seen[c.case_id].image}")
        seen[c.case_id] = c
        out.append(c)
    return out
