"""A corpus of bad inputs (issue 13, part 1): every kind of broken file a user can hand the commands.

Each `BadInput` writes one broken thing from tiny arrays (8x8x8 voxels), so the whole corpus takes
well under a second. `tests/e2e/test_reliability_corpus.py` drives every input through every command
that reads it; `python tests/helpers/bad_inputs.py OUT` writes the corpus to a folder to look at.

Kinds (what the writer is given, where the test puts the result):
  image       `write(dest)`: a broken CT file at `dest` (a case's image)
  label       `write(dest, image_file)`: a broken label map for the good image `image_file`
  case        `write(images_dir, labels_dir, stem)`: a broken case layout (a file missing, stray files)
  dicom       `write(folder)`: a broken DICOM series folder
  json        `write(dest)`: a broken dataset.json
  plans       `write(dest, good_plans_file)`: broken plans
  checkpoint  `write(dest, good_checkpoint_file)`: a broken checkpoint
  zip         `write(dest, good_zip_file)`: a broken model archive
  environment no file: an unwritable output folder, a full disk, a closed pipe (set up by the test)
"""
from __future__ import annotations

import gzip
import json
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import SimpleITK as sitk

SHAPE = (8, 8, 8)  # (z, y, x)
SPACING = (2.0, 2.0, 2.0)


# ---------------------------------------------------------------------------- good tiny data
def ct_array(seed: int = 0) -> np.ndarray:
    """(z, y, x) int16 CT: air with a soft-tissue cube in the middle."""
    rng = np.random.default_rng(seed)
    arr = np.full(SHAPE, -1000, np.int16) + rng.integers(0, 20, SHAPE).astype(np.int16)
    arr[2:6, 2:6, 2:6] = 50
    return arr


def label_array(shape=SHAPE) -> np.ndarray:
    """(z, y, x) uint8 label: class 1 in the middle quarter of each axis, background elsewhere."""
    lab = np.zeros(shape, np.uint8)
    lab[tuple(slice(n // 4, n - n // 4) for n in shape)] = 1
    return lab


def image(arr: np.ndarray, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    if direction is not None:
        img.SetDirection([float(v) for v in np.asarray(direction, float).flatten()])
    return img


def write_image(dest: Path, img: sitk.Image) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(dest), useCompression=dest.name.endswith(".gz"))
    return dest


def write_good_case(images_dir: Path, labels_dir: Path, stem: str, seed: int = 0, channel: bool = True) -> None:
    """`images_dir/<stem>[_0000].nii.gz` (CT) and `labels_dir/<stem>.nii.gz` (one class)."""
    write_image(Path(images_dir) / f"{stem}{'_0000' if channel else ''}.nii.gz", image(ct_array(seed)))
    write_image(Path(labels_dir) / f"{stem}.nii.gz", image(label_array()))


# ---------------------------------------------------------------------------- images
def _zero_byte(dest: Path) -> None:
    dest.write_bytes(b"")


def _corrupt_gzip(dest: Path) -> None:
    write_image(dest, image(ct_array()))
    data = bytearray(dest.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64  # damaged deflate stream, intact header
    dest.write_bytes(bytes(data))


def _truncated_nifti(dest: Path) -> None:
    write_image(dest, image(ct_array()))
    raw = gzip.decompress(dest.read_bytes())
    dest.write_bytes(gzip.compress(raw[: 352 + len(raw[352:]) // 2]))  # a download cut half way


def _huge_header(dest: Path) -> None:
    """A NIfTI-1 header claiming 10^4 x 10^4 x 10^4 = 10^12 voxels, followed by 512 bytes."""
    write_image(dest, image(ct_array()))
    raw = bytearray(gzip.decompress(dest.read_bytes()))
    struct.pack_into("<8h", raw, 40, 3, 10000, 10000, 10000, 1, 1, 1, 1)
    dest.write_bytes(gzip.compress(bytes(raw[:352 + 512])))


def _nan_inf(dest: Path) -> None:
    arr = ct_array().astype(np.float32)
    arr[1, 1, 1], arr[2, 2, 2] = np.nan, np.inf
    write_image(dest, image(arr))


def _image_2d(dest: Path) -> None:
    write_image(dest, image(ct_array()[4], SPACING[:2], (0.0, 0.0)))


def _image_4d(dest: Path) -> None:
    """Two time points of the 8x8x8 volume (a 4D NIfTI, as a perfusion or multi-phase export)."""
    img = sitk.JoinSeries([image(ct_array(0)), image(ct_array(1))])
    write_image(dest, img)


def _oblique(images_dir: Path, labels_dir: Path, stem: str) -> None:
    """Image and label on the same grid, whose axes are rotated 30 degrees about z (a tilted acquisition)."""
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    write_image(Path(images_dir) / f"{stem}_0000.nii.gz", image(ct_array(), direction=rot))
    write_image(Path(labels_dir) / f"{stem}.nii.gz", image(label_array(), direction=rot))


# ---------------------------------------------------------------------------- labels (for a good image)
def _shape(image_file: Path) -> tuple:
    return sitk.ReadImage(str(image_file)).GetSize()[::-1]


def _label_like(image_file: Path, arr: Optional[np.ndarray] = None, **geometry) -> sitk.Image:
    """A label map on the grid of `image_file` (or with the geometry given)."""
    ref = sitk.ReadImage(str(image_file))
    return image(label_array(_shape(image_file)) if arr is None else arr, geometry.get("spacing", ref.GetSpacing()),
                 geometry.get("origin", ref.GetOrigin()), geometry.get("direction", ref.GetDirection()))


def _label_size(dest: Path, image_file: Path) -> None:
    z, y, x = _shape(image_file)
    write_image(dest, _label_like(image_file, label_array((z, y, x - 2))))


def _label_spacing(dest: Path, image_file: Path) -> None:
    write_image(dest, _label_like(image_file, spacing=(2.0, 2.0, 3.0)))


def _label_origin(dest: Path, image_file: Path) -> None:
    write_image(dest, _label_like(image_file, origin=(0.0, 0.0, 40.0)))


def _label_direction(dest: Path, image_file: Path) -> None:
    write_image(dest, _label_like(image_file, direction=np.diag([1.0, -1.0, 1.0])))  # y flipped, no copy of it


def _label_outside(dest: Path, image_file: Path) -> None:
    arr = label_array(_shape(image_file))
    arr[0, 0, 0] = 7  # the source / dataset.json defines 0 and 1 only
    write_image(dest, _label_like(image_file, arr))


def _label_float(dest: Path, image_file: Path) -> None:
    arr = label_array(_shape(image_file)).astype(np.float32)
    arr[2, 2, 2] = 0.5
    write_image(dest, _label_like(image_file, arr))


def _label_empty(dest: Path, image_file: Path) -> None:
    write_image(dest, _label_like(image_file, np.zeros(_shape(image_file), np.uint8)))


# ---------------------------------------------------------------------------- case layouts
def _missing_label(images_dir: Path, labels_dir: Path, stem: str) -> None:
    write_good_case(images_dir, labels_dir, stem)
    (Path(labels_dir) / f"{stem}.nii.gz").unlink()


def _missing_image(images_dir: Path, labels_dir: Path, stem: str) -> None:
    write_good_case(images_dir, labels_dir, stem)
    for p in Path(images_dir).glob(f"{stem}*.nii.gz"):
        p.unlink()


def _stray_files(images_dir: Path, labels_dir: Path, stem: str) -> None:
    """A good case plus what downloads and file managers leave around: notes, macOS resource forks."""
    write_good_case(images_dir, labels_dir, stem)
    for d in (Path(images_dir), Path(labels_dir)):
        (d / "README.txt").write_text("exported from PACS\n")
        (d / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (d / f"._{stem}.nii.gz").write_bytes(b"\0\5\26\7" + b"\0" * 60)


# ---------------------------------------------------------------------------- DICOM
def write_dicom_series(folder: Path, arr: np.ndarray, z0: float = 0.0, series_uid: Optional[str] = None,
                       skip: int = -1) -> List[Path]:
    """One axial CT series, a file per slice (slice `skip` left out)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, study = series_uid or generate_uid(), generate_uid()
    files = []
    for z in range(arr.shape[0]):
        if z == skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"s{series.rsplit('.', 1)[-1]}-{z + 1:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "CT", "CORPUS"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [0.0, 0.0, z0 + z * SPACING[2]]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [SPACING[1], SPACING[0]]
        ds.SliceThickness = SPACING[2]
        ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(arr[z].astype(np.int16)).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        files.append(path)
    return files


def _dicom_missing_slice(folder: Path) -> None:
    write_dicom_series(folder, ct_array(), series_uid="1.2.826.0.1.3680043.8.498.1", skip=4)


def _dicom_two_series(folder: Path) -> None:
    write_dicom_series(folder, ct_array(0), series_uid="1.2.826.0.1.3680043.8.498.1")
    write_dicom_series(folder, ct_array(1), z0=100.0, series_uid="1.2.826.0.1.3680043.8.498.2")


# ---------------------------------------------------------------------------- dataset.json
def _json_not_json(dest: Path) -> None:
    dest.write_text('{"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1')  # cut off


def _json_no_labels(dest: Path) -> None:
    dest.write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 1, "file_ending": ".nii.gz"}))


# ---------------------------------------------------------------------------- plans
def _plans_unknown_backbone(dest: Path, good: Path) -> None:
    plans = json.loads(Path(good).read_text())
    plans.setdefault("suprem", {})["backbone"] = "transunet9000"
    for cfg in plans["configurations"].values():
        if "architecture" in cfg:
            cfg["architecture"]["network_class_name"] = "transunet9000.TransUNet9000"
    dest.write_text(json.dumps(plans, indent=1))


# ---------------------------------------------------------------------------- checkpoints
def _ckpt_truncated(dest: Path, good: Path) -> None:
    data = Path(good).read_bytes()
    dest.write_bytes(data[: len(data) // 2])


class Payload:
    """A pickled object a checkpoint must never be allowed to run (its unpickling would call exit)."""

    def __reduce__(self):
        return (sys.exit, ("unpickled a code object",))


def _ckpt_pickled(dest: Path, good: Path) -> None:
    import torch

    torch.save({"network_weights": {"w": torch.zeros(2)}, "payload": Payload()}, dest)


def _ckpt_other_architecture(dest: Path, good: Path) -> None:
    """A well-formed training checkpoint of our format whose tensors belong to another network
    (every weight of the good checkpoint replaced by a tensor of another shape)."""
    import torch

    ckpt = torch.load(good, weights_only=False)
    ckpt["network_weights"] = {k: torch.zeros(3, 2) for k in ckpt["network_weights"]}
    torch.save(ckpt, dest)


# ---------------------------------------------------------------------------- model archives
def _zip_with(dest: Path, good: Path, extra: Dict[str, bytes]) -> None:
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            out.writestr(item, src.read(item.filename))
        for name, data in extra.items():
            out.writestr(zipfile.ZipInfo(name), data)


def _zip_slip(dest: Path, good: Path) -> None:
    _zip_with(dest, good, {"fold_all/../../evil.txt": b"written outside the import folder"})


def _zip_absolute(dest: Path, good: Path) -> None:
    _zip_with(dest, good, {"/tmp/suprem_zip_absolute_evil.txt": b"written to an absolute path"})


def _zip_bomb(dest: Path, good: Path) -> None:
    """A valid model archive plus 64 MiB of zeros that compress about 1000:1."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            out.writestr(item, src.read(item.filename))
        info = zipfile.ZipInfo("fold_all/padding.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        with out.open(info, "w") as f:
            block = b"\0" * (1 << 20)
            for _ in range(64):
                f.write(block)


def _zip_truncated(dest: Path, good: Path) -> None:
    data = Path(good).read_bytes()
    dest.write_bytes(data[: len(data) // 2])


# ---------------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class BadInput:
    name: str  # short id, the first column of tests/e2e/reliability.md
    kind: str  # see the module docstring
    what: str  # one line for the table
    write: Optional[Callable] = None  # None for kind 'environment'


CORPUS: List[BadInput] = [
    BadInput("zero_byte", "image", "zero-byte image file", _zero_byte),
    BadInput("corrupt_gzip", "image", "corrupt gzip stream in a .nii.gz", _corrupt_gzip),
    BadInput("truncated_nifti", "image", "NIfTI cut off half way through its voxels", _truncated_nifti),
    BadInput("huge_header", "image", "header claiming 10^12 voxels (file of 864 bytes)", _huge_header),
    BadInput("nan_inf", "image", "float image holding NaN and Inf voxels", _nan_inf),
    BadInput("image_2d", "image", "2D image", _image_2d),
    BadInput("image_4d", "image", "4D image (two volumes)", _image_4d),
    BadInput("oblique", "case", "oblique direction (image and label rotated 30 degrees about z)", _oblique),
    BadInput("label_size", "label", "label size differs from the image", _label_size),
    BadInput("label_spacing", "label", "label spacing differs from the image", _label_spacing),
    BadInput("label_origin", "label", "label origin 40 mm off the image's", _label_origin),
    BadInput("label_direction", "label", "label direction differs from the image", _label_direction),
    BadInput("label_outside_map", "label", "label value 7, not in the label map", _label_outside),
    BadInput("label_float", "label", "float label holding 0.5", _label_float),
    BadInput("label_empty", "label", "empty label map (all background)", _label_empty),
    BadInput("missing_label", "case", "image without its label", _missing_label),
    BadInput("missing_image", "case", "label without its image", _missing_image),
    BadInput("stray_files", "case", "README.txt, .DS_Store and ._case.nii.gz next to the cases", _stray_files),
    BadInput("dicom_missing_slice", "dicom", "DICOM series with slice 5 of 8 missing", _dicom_missing_slice),
    BadInput("dicom_two_series", "dicom", "two DICOM series in one folder", _dicom_two_series),
    BadInput("json_malformed", "json", "dataset.json cut off (invalid JSON)", _json_not_json),
    BadInput("json_no_labels", "json", "dataset.json without 'labels'", _json_no_labels),
    BadInput("plans_unknown_backbone", "plans", "plans naming an unknown backbone", _plans_unknown_backbone),
    BadInput("ckpt_truncated", "checkpoint", "checkpoint cut off half way", _ckpt_truncated),
    BadInput("ckpt_pickled", "checkpoint", "checkpoint holding a pickled Python object", _ckpt_pickled),
    BadInput("ckpt_other_arch", "checkpoint", "checkpoint of another architecture", _ckpt_other_architecture),
    BadInput("zip_slip", "zip", "model archive with a ../ path (zip-slip)", _zip_slip),
    BadInput("zip_absolute", "zip", "model archive with an absolute path", _zip_absolute),
    BadInput("zip_bomb", "zip", "model archive expanding to > 100x its size", _zip_bomb),
    BadInput("zip_truncated", "zip", "model archive cut off half way", _zip_truncated),
    BadInput("unwritable_output", "environment", "output folder without write permission"),
    BadInput("disk_full", "environment", "disk full while writing (ENOSPC)"),
    BadInput("closed_pipe", "environment", "stdout closed early (`suprem_convert --list | head`)"),
]
BY_NAME = {b.name: b for b in CORPUS}


def write_all(root: Path, good_checkpoint: Optional[Path] = None, good_zip: Optional[Path] = None,
              good_plans: Optional[Path] = None) -> Dict[str, Path]:
    """Write every file-based input of the corpus under `root` ({name: path}). Plans, checkpoint and
    archive inputs are derived from good ones and are written only when those are given."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    good_image = write_image(root / "good" / "ct.nii.gz", image(ct_array()))
    out: Dict[str, Path] = {}
    for b in CORPUS:
        dest = root / b.name
        if b.kind == "image":
            b.write(dest.with_name(f"{b.name}.nii.gz"))
            out[b.name] = dest.with_name(f"{b.name}.nii.gz")
        elif b.kind == "label":
            b.write(dest.with_name(f"{b.name}.nii.gz"), good_image)
            out[b.name] = dest.with_name(f"{b.name}.nii.gz")
        elif b.kind == "case":
            b.write(dest / "images", dest / "labels", "case")
            out[b.name] = dest
        elif b.kind == "dicom":
            b.write(dest)
            out[b.name] = dest
        elif b.kind == "json":
            dest.mkdir(exist_ok=True)
            b.write(dest / "dataset.json")
            out[b.name] = dest / "dataset.json"
        else:
            good = {"plans": good_plans, "checkpoint": good_checkpoint, "zip": good_zip}.get(b.kind)
            if good is not None:
                suffix = {"plans": ".json", "checkpoint": ".pth", "zip": ".zip"}[b.kind]
                b.write(dest.with_name(b.name + suffix), good)
                out[b.name] = dest.with_name(b.name + suffix)
    return out


if __name__ == "__main__":
    written = write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs"))
    print("\n".join(f"{k}: {v}" for k, v in written.items()))
