"""nnU-Net image reader/writer that hands nnU-Net every image reoriented to RAS.

nnU-Net's `SimpleITKIO` returns the voxel array in the file's own layout; the SuPreM releases were
trained on arrays reoriented to RAS. `RASSimpleITKIO` reads like `SimpleITKIO`, then permutes and
flips the voxels (no interpolation, `sitk.DICOMOrient`) so that array axes (z, y, x) run along
S, A, R; with the plans' `transpose_forward = [2, 1, 0]` the network sees (x, y, z) = (R, A, S).

The properties keep the file's own geometry (`original_sitk_stuff`, `original_orientation`), and
`write_seg` puts a segmentation back onto the input's exact grid: same size, spacing, origin,
direction and voxel layout as the image it was read from.
"""
from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
import SimpleITK as sitk
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from ..errors import InputError


def orientation_code(direction) -> str:
    """The 3-letter DICOM orientation code (e.g. 'LPS', 'RAS') closest to a SimpleITK direction."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines([float(v) for v in direction])


def _image(array: np.ndarray, geometry: dict) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(geometry["spacing"]))
    img.SetOrigin(tuple(geometry["origin"]))
    img.SetDirection(tuple(geometry["direction"]))
    return img


def _geometry(img: sitk.Image) -> dict:
    return {"spacing": img.GetSpacing(), "origin": img.GetOrigin(), "direction": img.GetDirection()}


class RASSimpleITKIO(SimpleITKIO):
    """SimpleITKIO whose arrays are reoriented to `orientation` (RAS); segmentations are written back
    in each input's own orientation and grid."""

    orientation = "RAS"

    def read_images(self, image_fnames: Union[List[str], Tuple[str, ...]]) -> Tuple[np.ndarray, dict]:
        data, props = super().read_images(image_fnames)
        original = props["sitk_stuff"]
        if len(original["spacing"]) != 3 or data.ndim != 4:
            raise InputError(f"{image_fnames[0]}: reorienting to {self.orientation} needs a 3D image, "
                             f"got {len(original['spacing'])}D")
        channels, img = [], None
        for channel in data:
            img = sitk.DICOMOrient(_image(channel, original), self.orientation)
            channels.append(sitk.GetArrayFromImage(img))
        props = {
            "sitk_stuff": _geometry(img),  # the grid of the returned array
            "spacing": [float(s) for s in img.GetSpacing()[::-1]],  # array order (z, y, x), as SimpleITKIO
            "original_sitk_stuff": original,  # the file's grid, where write_seg puts segmentations
            "original_orientation": orientation_code(original["direction"]),
        }
        return np.stack(channels).astype(np.float32, copy=False), props

    def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
        original = properties.get("original_sitk_stuff")
        if original is None:  # properties of an image that was read without reorientation
            return super().write_seg(seg, output_fname, properties)
        if seg.ndim != 3:
            raise InputError(f"{output_fname}: segmentation must be 3D, got shape {seg.shape}")
        img = sitk.DICOMOrient(_image(np.ascontiguousarray(seg), properties["sitk_stuff"]),
                               properties["original_orientation"])
        super().write_seg(sitk.GetArrayFromImage(img), output_fname, {"sitk_stuff": original})
