"""DICOM-SEG output: a predicted label map as one DICOM Segmentation per case (highdicom).

The SEG references the source series it was predicted from (one frame per source slice and
segment, omitting empty frames), holds one BINARY segment per class present in the prediction
(segment numbers 1..n in label id order; classes left out by `--roi-subset` are not in the label
map and so not in the SEG), each with its name as the segment label and its SNOMED CT concept
(`labels.snomed`). A gantry-tilted series, read onto an orthogonal grid, has its label map taken
back onto the source slices' own pixel grids (nearest neighbour) first, so every frame lies on
its source image.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Mapping, Optional, Tuple, Union

import numpy as np

from .. import __version__
from ..dataset.dicom_io import quiet_itk, series_layout
from ..labels.snomed import segment_concept
from .dicom import dicom_series, pick_series
from ..errors import InputError

log = logging.getLogger(__name__)
OUTPUT_TYPES = ("nifti", "dicom-seg", "both")
SEG_ENDING = ".dcm"


def seg_source(inputs: Union[str, Path], output_type: str) -> Optional[Path]:
    """The DICOM series folder a SEG is written against, None for `output_type` "nifti";
    ValueError (one line) for an unknown type or a SEG request on an input that is not a DICOM series."""
    if output_type not in OUTPUT_TYPES:
        raise InputError(f"--output-type must be one of {', '.join(OUTPUT_TYPES)}, not {output_type!r}")
    if output_type == "nifti":
        return None
    p = Path(inputs)
    if not p.is_dir() or not dicom_series(p):
        raise InputError(f"{p}: --output-type {output_type} needs a DICOM series as input (a folder of DICOM "
                         "files): a DICOM-SEG must reference its source images")
    return p


def _code(value: Tuple[str, str]):
    from highdicom.sr.coding import CodedConcept

    return CodedConcept(value[0], "SCT", value[1])


def _description(number: int, name: str, algorithm):
    import highdicom as hd
    from pydicom.sequence import Sequence

    c = segment_concept(name)
    desc = hd.seg.SegmentDescription(
        segment_number=number, segment_label=name, segmented_property_category=_code(c.category),
        segmented_property_type=_code(c.type), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm, anatomic_regions=[_code(c.region)] if c.region else None)
    if c.laterality is not None:
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = \
            Sequence([_code(c.laterality)])
    return desc


def write_dicom_seg(labels_file: Union[str, Path], source_folder: Union[str, Path], dest: Union[str, Path],
                    class_ids: Mapping[str, int], series_uid: Optional[str] = None,
                    model_name: str = "suprem-nnunet") -> Optional[Path]:
    """Write the label map `labels_file` (on the grid `dataset.dicom_io.read_series` gives the source
    series) as a DICOM-SEG at `dest` (via a temporary file). Returns `dest`, or None (with a warning)
    when no class of `class_ids` is present: a SEG needs at least one segment."""
    import highdicom as hd
    import pydicom
    import SimpleITK as sitk
    from pydicom.sr.codedict import codes

    source_folder, dest = Path(source_folder), Path(dest)
    uid, files = pick_series(source_folder, series_uid)
    layout = series_layout(source_folder, files)
    with quiet_itk():
        img = sitk.ReadImage(str(labels_file))
    arr = sitk.GetArrayFromImage(img)
    expected = (len(layout.headers), *layout.canvas)
    if arr.shape != expected or not np.allclose(img.GetOrigin(), layout.origin, atol=1e-2) \
            or not np.allclose(img.GetSpacing(), layout.spacing, rtol=1e-4) \
            or not np.allclose(img.GetDirection(), layout.direction, atol=1e-4):
        raise InputError(f"{labels_file}: label map of size {img.GetSize()} is not on the grid of DICOM series "
                         f"{uid} in {source_folder}")
    src = layout.to_source_grid(arr)
    names = {int(i): n for n, i in class_ids.items()}
    present = [int(v) for v in np.unique(src) if int(v) != 0 and int(v) in names]
    if not present:
        log.warning("%s: no class present in the prediction; no DICOM-SEG written", labels_file)
        return None
    lut = np.zeros(int(src.max()) + 1, np.uint16 if len(present) > 255 else np.uint8)
    for number, lid in enumerate(present, start=1):
        lut[lid] = number
    algorithm = hd.AlgorithmIdentificationSequence(name=model_name[:64], version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [_description(number, names[lid], algorithm) for number, lid in enumerate(present, start=1)]
    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in layout.files]
    for ds in sources:
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:  # empty: the default repertoire
            del ds.SpecificCharacterSet
    with warnings.catch_warnings():  # highdicom warns about source attributes (e.g. a patient name's form)
        warnings.simplefilter("ignore", UserWarning)
        seg = _segmentation(hd, sources, lut[src], descriptions, model_name)
    tmp = dest.with_name(f".tmp-{dest.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(tmp))
    tmp.replace(dest)
    log.info("DICOM-SEG %s: %d segment(s) on series %s", dest, len(present), uid)
    return dest


def _segmentation(hd, sources, pixels: np.ndarray, descriptions, model_name: str):
    from pydicom.uid import generate_uid

    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=9901,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="suprem-nnunet",
        manufacturer_model_name=model_name[:64], software_versions=__version__, device_serial_number="none",
        series_description="SuPreM segmentation", content_label="SEGMENTATION")


def case_outputs(nifti_file: Path, source: Optional[Path], series_uid: Optional[str], class_ids: Mapping[str, int],
                 output_type: str, model_name: str = "suprem-nnunet") -> list:
    """The files of one finished case for `output_type`: the NIfTI label map, its DICOM-SEG
    `<case>.dcm` next to it (written from it), or both; with "dicom-seg" the NIfTI is removed once
    the SEG is written."""
    if source is None:
        return [nifti_file]
    case = nifti_file.name[: -len("".join(nifti_file.suffixes))] if nifti_file.suffixes else nifti_file.name
    seg = write_dicom_seg(nifti_file, source, nifti_file.with_name(case + SEG_ENDING), class_ids, series_uid,
                          Path(model_name).name or model_name)
    if output_type == "dicom-seg":
        if seg is None:  # nothing to put in a SEG: keep the (empty) NIfTI rather than no output at all
            return [nifti_file]
        nifti_file.unlink()
        return [seg]
    return [nifti_file] + ([seg] if seg is not None else [])
