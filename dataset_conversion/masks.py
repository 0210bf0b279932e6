"""Sources that ship one binary mask file per class (AbdomenAtlas, TotalSegmentator)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError
from .imageio import align_to, read_image


def paint_masks(masks: Sequence[Tuple[int, Path]], image: sitk.Image, image_path: Path) -> sitk.Image:
    """One label image (source ids) from binary masks on the image grid, painted in the given
    order (later masks win where masks overlap: put tumours last)."""
    size = image.GetSize()[::-1]
    out = np.zeros(size, np.uint8 if max((i for i, _ in masks), default=0) < 256 else np.uint16)
    for sid, path in masks:
        m = sitk.GetArrayFromImage(align_to(read_image(path), image, path, image_path))
        values = np.unique(m)
        if not set(values.tolist()) <= {0, 1}:
            raise BadInputError(path, f"mask holds values {values[:6].tolist()}; expected a binary 0/1 mask")
        out[m == 1] = sid
    lab = sitk.GetImageFromArray(out)
    lab.CopyInformation(image)
    return lab
