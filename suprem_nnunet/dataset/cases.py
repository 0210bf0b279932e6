"""Case files: image endings, case names from file names, nnU-Net channel naming, input folders."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Sequence, Union

from ..errors import InputError, MissingFileError
from .image_checks import check_image_file

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def case_name(path: Union[str, Path]) -> str:
    """The file name without its image ending: 'ct_0000.nii.gz' -> 'ct_0000', 'volume-3.nii' -> 'volume-3'.

    Never strips a channel suffix: label and prediction files are named by their full stem;
    `group_channel_files` alone reads nnU-Net's `<case>_<channel>` naming of image folders.
    """
    name = Path(path).name
    for end in IMAGE_ENDINGS:
        if name.lower().endswith(end):
            return name[: -len(end)]
    return name


def cases_by_stem(files: Sequence[Union[str, Path]]) -> Dict[str, Path]:
    """{full stem: file}; two files with one stem (e.g. 'a.nii' and 'a.nii.gz') are an error naming both."""
    out: Dict[str, Path] = {}
    for f in files:
        c = case_name(f)
        if c in out:
            raise InputError(f"{f}: case {c!r} is also {out[c]} (two files with one case name)")
        out[c] = Path(f)
    return out


def group_channel_files(files: Sequence[Union[str, Path]], num_channels: int = 1) -> Dict[str, List[str]]:
    """{case: [channel files in channel order]} for the image files of one folder.

    nnU-Net naming (`<case>_0000.nii.gz`, ...) is used only when EVERY file ends in `_NNNN` and every
    case has exactly the channels 0000..C-1 (C = `num_channels`). Otherwise, with one channel, each
    file is its own case named by its full stem ('btcv_0001.nii.gz' -> 'btcv_0001'); with several
    channels, ValueError naming the offending file.
    """
    files = [Path(f) for f in files]
    parsed = [CHANNEL_SUFFIX.match(case_name(f)) for f in files]
    groups: Dict[str, Dict[int, Path]] = {}
    if all(parsed):
        for f, m in zip(files, parsed):
            ch = groups.setdefault(m["case"], {})
            if int(m["channel"]) in ch:
                raise InputError(f"{f}: channel {m['channel']} of case {m['case']!r} is also {ch[int(m['channel'])]}")
            ch[int(m["channel"])] = f
        if all(sorted(ch) == list(range(num_channels)) for ch in groups.values()):
            return {c: [str(ch[i]) for i in range(num_channels)] for c, ch in groups.items()}
    if num_channels == 1:
        return {c: [str(f)] for c, f in cases_by_stem(files).items()}
    for f, m in zip(files, parsed):
        if m is None:
            raise InputError(f"{f}: the model takes {num_channels} channels, so inputs must be named "
                             f"<case>_0000 .. <case>_{num_channels - 1:04d} (nnU-Net channel naming)")
    for c, ch in groups.items():
        if sorted(ch) != list(range(num_channels)):
            first = ch[min(ch)]
            raise InputError(f"{first}: case {c!r} has channel(s) {', '.join(f'{i:04d}' for i in sorted(ch))}, "
                             f"the model takes {num_channels} (0000..{num_channels - 1:04d})")
    raise AssertionError("unreachable")  # pragma: no cover


def list_inputs(inp: Union[str, Path], num_channels: int = 1) -> Dict[str, List[str]]:
    """{case: [channel files]} from a file or a folder (see `group_channel_files` for the naming)."""
    p = Path(inp)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(IMAGE_ENDINGS)
                       and not f.name.startswith("."))
        if not files:
            raise MissingFileError(f"{p}: no image files ({', '.join(IMAGE_ENDINGS)}) in this folder")
    else:
        raise MissingFileError(f"{p}: no such file or folder")
    return group_channel_files(files, num_channels)


def check_readable(files: Sequence[str]) -> None:
    """Raise ValueError naming the first file that is not a whole 3D scalar image (missing, empty,
    truncated, corrupt, a header claiming too many voxels, 2D, 4D, one voxel thick along an axis) or holds
    NaN / Inf voxels."""
    for f in files:
        check_image_file(f, "image", finite=True, volume=True)
