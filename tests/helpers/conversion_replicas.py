"""Helpers for the dataset-conversion tests: miniature phantom replicas of each source's layout.

Replicas use the phantom generator (patient-LPS anatomy) on small grids, with the source's own
label ids, orientation and file naming; expectations are computed in LPS so they do not depend
on how the source stores its voxels.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from suprem_nnunet.synth.phantom import Phantom, PhantomGenerator

from helpers.paths import REAL, ROOT

if str(ROOT) not in sys.path:  # the editable install predates dataset_conversion/
    sys.path.insert(0, str(ROOT))

SHAPE = (32, 28, 24)  # (x, y, z) voxels
SPACING = (11.0, 10.0, 10.0)  # mm

# Unified names the replica labels come from: a source id maps to a phantom structure, a tuple
# of structures (both kidneys in one id), or an extra blob painted at a world position.
Spec = Mapping[int, Union[str, Tuple[str, ...]]]


#: Tumour -> host organ; a tumour the phantom did not draw visibly is added as a ball inside its host.
TUMORS = {"liver_tumor": "liver", "kidney_tumor": "kidney_left", "kidney_cyst": "kidney_right",
          "pancreas_tumor": "pancreas"}


def phantom(seed: int, orientation: str = "LPS", shape=SHAPE, spacing=SPACING) -> Phantom:
    return PhantomGenerator(seed)(shape, spacing, orientation, noise_hu=5.0)


def sitk_image(arr: np.ndarray, ph: Phantom) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(ph.spacing)
    img.SetOrigin(ph.origin)
    img.SetDirection(np.asarray(ph.direction, float).flatten().tolist())
    return img


def write(path: Path, arr: np.ndarray, ph: Phantom) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk_image(arr, ph), str(path), useCompression=str(path).endswith(".gz"))
    return path


def _world(ph: Phantom) -> np.ndarray:
    """(z, y, x, 3) LPS coordinates of every voxel."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in ph.image.shape), indexing="ij")
    d = np.asarray(ph.direction) * np.asarray(ph.spacing)
    return np.asarray(ph.origin) + np.stack([i, j, k], -1).astype(float) @ d.T


def blob(ph: Phantom, center_lps: Sequence[float], radius_mm: float, world=None) -> np.ndarray:
    """A ball at a world (LPS) position on the phantom's grid."""
    world = _world(ph) if world is None else world
    return np.linalg.norm(world - np.asarray(center_lps), axis=-1) <= radius_mm


#: Structures the phantom does not draw, placed as blobs (LPS mm, radius) so every id of a
#: source can be exercised. Left structures at +x (patient left).
BLOBS: Dict[str, Tuple[Tuple[float, float, float], float]] = {
    "adrenal_gland_left": ((50.0, 40.0, 62.0), 12.0),
    "adrenal_gland_right": ((-52.0, 40.0, 55.0), 12.0),
    "esophagus": ((5.0, 30.0, 105.0), 11.0),
    "duodenum": ((-20.0, -10.0, 15.0), 12.0),
    "colon": ((60.0, -50.0, -60.0), 14.0),
    "intestine": ((0.0, -60.0, -40.0), 15.0),
    "bladder": ((0.0, -30.0, -105.0), 14.0),
    "rectum": ((0.0, 40.0, -105.0), 11.0),
    "femur_left": ((80.0, 10.0, -110.0), 13.0),
    "femur_right": ((-80.0, 10.0, -110.0), 13.0),
    "lung_left": ((75.0, 20.0, 110.0), 20.0),
    "lung_right": ((-75.0, 20.0, 110.0), 20.0),
    "portal_vein_and_splenic_vein": ((-10.0, 0.0, 45.0), 10.0),
    "hepatic_vessel": ((-70.0, 0.0, 90.0), 10.0),
    "bowel": ((-40.0, -60.0, -20.0), 15.0),
    "bone": ((0.0, 95.0, -60.0), 12.0),
    "prostate": ((0.0, 10.0, -112.0), 9.0),
    "brain": ((0.0, 0.0, 115.0), 9.0),
    "celiac_trunk": ((12.0, 0.0, 60.0), 9.0),
    "lung_tumor": ((75.0, 20.0, 110.0), 10.0),
    "colon_tumor": ((60.0, -50.0, -60.0), 10.0),
    "hepatic_vessel_tumor": ((-75.0, 0.0, 65.0), 10.0),
}


def masks(ph: Phantom) -> Dict[str, np.ndarray]:
    """Phantom masks plus the blob structures (blobs occlude phantom structures); every tumour
    type is present inside its host organ. Cached on the phantom."""
    if "_replica_masks" in ph.__dict__:
        return {k: v.copy() for k, v in ph.__dict__["_replica_masks"].items()}
    world = _world(ph)
    out = {k: v.copy() for k, v in ph.masks.items()}
    for name, (c, r) in BLOBS.items():
        b = blob(ph, c, r, world)
        for m in out.values():
            m &= ~b
        out[name] = b
    for t, host in TUMORS.items():
        if out[t].sum() < 2:
            centre = world[out[host]].mean(0)
            ball = blob(ph, centre, 9.0, world) & out[host]
            out[host] &= ~ball
            out[t] |= ball
    ph.__dict__["_replica_masks"] = out
    return {k: v.copy() for k, v in out.items()}


def source_label(ph: Phantom, spec: Spec, dtype=np.uint8) -> np.ndarray:
    """A label array with the source's ids, painted in id order of `spec` (tumours last)."""
    m = masks(ph)
    out = np.zeros(ph.image.shape, dtype)
    for sid, names in spec.items():
        for n in (names,) if isinstance(names, str) else names:
            out[m[n]] = sid
    return out


def lps(arr: np.ndarray, ph: Phantom) -> np.ndarray:
    """`arr` (on the phantom grid) reoriented to LPS, as the converters write it."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(sitk_image(arr, ph), "LPS"))


def read_dataset(folder: Path):
    dj = json.loads((folder / "dataset.json").read_text())
    ann = json.loads((folder / "annotated_classes.json").read_text())
    return dj, ann


def read_label(folder: Path, case: str) -> Tuple[np.ndarray, sitk.Image]:
    img = sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz"))
    return sitk.GetArrayFromImage(img), img


def check_case(folder: Path, case: str, ph: Phantom, expected: Iterable[str], absent: Iterable[str] = (),
               truth: Optional[Mapping[str, np.ndarray]] = None) -> None:
    """The written label holds each expected class exactly where the phantom has it (in LPS),
    and the image keeps the phantom's voxels and world geometry."""
    dj, _ = read_dataset(folder)
    ids = dj["labels"]
    lab, lab_img = read_label(folder, case)
    m = dict(masks(ph), **(truth or {}))
    for name in expected:
        want = lps(m[name].astype(np.uint8), ph).astype(bool)
        got = lab == ids[name]
        assert want.any(), f"replica has no {name}"
        assert np.array_equal(got, want), f"{case}: {name} differs in {np.sum(got != want)} voxels"
    for name in absent:
        assert name not in ids or not (lab == ids[name]).any(), f"{case}: unexpected {name}"
    img = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
    assert np.allclose(img.GetDirection(), np.eye(3).flatten()), "output is not LPS"
    ref = sitk.DICOMOrient(sitk_image(ph.image, ph), "LPS")
    assert np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-3)
    assert np.allclose(img.GetSpacing(), ref.GetSpacing())
    assert np.array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ref))
    assert lab_img.GetSize() == img.GetSize() and np.allclose(lab_img.GetOrigin(), img.GetOrigin())


def centroid_x(mask: np.ndarray, img: sitk.Image) -> float:
    """LPS x (mm) of a mask's centroid on `img`'s grid."""
    k, j, i = np.nonzero(mask)
    return img.TransformContinuousIndexToPhysicalPoint((float(i.mean()), float(j.mean()), float(k.mean())))[0]


def write_dicom_series(folder: Path, ph: Phantom, names=None, reverse_files: bool = False) -> list:
    """Write the phantom (LPS-oriented axial) as one CT DICOM series, one file per slice.

    `names(i)` gives the file name of file i; with `reverse_files` file 0 is the top slice.
    Returns the file paths in file order.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    d = np.asarray(ph.direction)
    if not np.allclose(d, np.eye(3)):
        raise ValueError("write_dicom_series needs an LPS phantom")
    folder.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    nz = ph.image.shape[0]
    paths = []
    for f in range(nz):
        z = nz - 1 - f if reverse_files else f
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / (names(f) if names else f"{f + 1}.dcm")
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "CT", "REPLICA"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.InstanceNumber = f + 1
        ds.ImagePositionPatient = [float(ph.origin[0]), float(ph.origin[1]), float(ph.origin[2] + z * ph.spacing[2])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(ph.spacing[1]), float(ph.spacing[0])]  # row spacing (y), column spacing (x)
        ds.SliceThickness = float(ph.spacing[2])
        ds.Rows, ds.Columns = ph.image.shape[1], ph.image.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(ph.image[z].astype(np.int16)).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths
