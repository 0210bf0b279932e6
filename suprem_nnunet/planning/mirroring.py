"""Mirroring along the patient's left-right axis when the label space holds left/right classes.

nnU-Net mirrors every training patch along each spatial axis with probability 1/2 and averages the
predictions of the mirrored inputs at test time. A flip along the patient's left-right (LR) axis
keeps the labels, so a `kidney_left` voxel lands where the right kidney lies, still labelled
`kidney_left`: half the batches teach each sided class on the wrong side. The plans record one of
three policies (`plans["suprem"]["mirroring"]`):

* `swap`: a flip along the LR axis also swaps the label values of every left/right pair (training)
  and the pair's output channels of a flipped prediction before averaging (test time);
* `omit`: the LR axis is left out of the mirror axes, in training and at test time;
* `nnunet`: nnU-Net's default (every axis, labels kept), for comparison only.

The default is `omit`, as TotalSegmentator trains its sided classes: every training image stays an
anatomically possible one (a flip along the LR axis puts the liver on the left, with or without the
label swap), and nothing is asked of prediction (docs/explanation/left-right-mirroring.md has the
side-by-side measurement).

Which array axis is LR follows from the image orientation: SimpleITK arrays are (z, y, x), i.e.
index axes in reverse; the LR index axis is the one whose direction-cosine column points mostly
along world x (LPS and RAS share that axis); the plans' `transpose_forward` then permutes the array
axes into the preprocessed ones. A reader that reorients to RAS fixes it (array axis 2). Where the
orientation is unknown (a reader without geometry) or differs between cases, `swap` cannot apply
and `omit` leaves out every candidate axis. `swap` also needs every sided class's partner among the
classes and every case that annotates one side of a pair to annotate the other (the annotated mask
is per case and is not flipped with the patch); otherwise `omit` is chosen and the reason recorded.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..labels.sides import sided_pairs
from ..labels.table import canonical
from ..dataset.raw import label_names, read_annotated_classes
from ..errors import InputError

log = logging.getLogger(__name__)

POLICIES = ("swap", "omit", "nnunet")
DEFAULT_POLICY = "omit"
#: readers whose arrays are reoriented to RAS: index axis 0 (array axis 2) runs along left-right
RAS_READERS = ("suprem_nnunet.preprocessing.ras_io.RASSimpleITKIO", "NibabelIOWithReorient")
#: readers whose arrays keep the file's voxel layout in SimpleITK's (z, y, x) order
HEADER_READERS = ("SimpleITKIO", "NibabelIO")


def check_policy(policy: str) -> str:
    """`policy` if it is one of POLICIES; ValueError naming it otherwise."""
    if policy not in POLICIES:
        raise InputError(f"unknown left-right mirroring policy {policy!r}; choose one of {', '.join(POLICIES)}")
    return policy


def lr_array_axis(direction: Sequence[float]) -> int:
    """The array axis (SimpleITK's reversed index order, with nnU-Net's leading dummy axis for 2D images)
    along the patient's left-right direction, from a SimpleITK direction (row-major n x n, columns =
    index axes in world coordinates): the index axis whose column is mostly along world x."""
    n = int(round(np.sqrt(len(direction))))
    if n * n != len(direction) or n not in (2, 3):
        raise InputError(f"direction {tuple(direction)}: expected 4 or 9 direction cosines")
    d = np.asarray(direction, dtype=float).reshape(n, n)
    return 2 - int(np.argmax(np.abs(d[0])))


def preprocessed_axis(array_axis: int, transpose_forward: Sequence[int]) -> int:
    """Where array axis `array_axis` of the reader's output lies after nnU-Net's `transpose_forward`."""
    order = [int(a) for a in transpose_forward]
    if sorted(order) != [0, 1, 2]:
        raise InputError(f"transpose_forward {list(transpose_forward)}: not a permutation of 0, 1, 2")
    return order.index(int(array_axis))


@dataclass
class MirroringPlan:
    """The decision for one dataset's classes and orientation (see the module docstring)."""

    requested: str
    policy: str  # what applies: swap | omit | nnunet
    lr_axes: List[int]  # preprocessed (3D) axes that are the patient's left-right in some case
    pairs: List[Tuple[int, int]] = field(default_factory=list)  # (left, right) label values
    pair_names: List[Tuple[str, str]] = field(default_factory=list)
    unpaired: List[str] = field(default_factory=list)  # sided classes whose partner is absent
    class_names: List[str] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pairs"] = [list(p) for p in self.pairs]
        d["pair_names"] = [list(p) for p in self.pair_names]
        return d

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "plans") -> "MirroringPlan":
        try:
            plan = cls(str(d["requested"]), str(d["policy"]), [int(a) for a in d["lr_axes"]],
                       [(int(a), int(b)) for a, b in d.get("pairs", [])],
                       [(str(a), str(b)) for a, b in d.get("pair_names", [])],
                       [str(n) for n in d.get("unpaired", [])], [str(n) for n in d.get("class_names", [])],
                       str(d.get("reason", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{where}: suprem.mirroring is malformed ({type(e).__name__}: {e})") from None
        check_policy(plan.requested)
        check_policy(plan.policy)
        if plan.policy == "swap" and len(plan.lr_axes) != 1:
            raise InputError(f"{where}: suprem.mirroring: policy swap needs exactly one left-right axis, "
                             f"got {plan.lr_axes}")
        return plan

    @property
    def sided(self) -> bool:
        """True when the classes include left/right classes (paired or not)."""
        return bool(self.pairs or self.unpaired)

    def spatial_lr_axes(self, dim: int) -> List[int]:
        """The LR axes among a configuration's spatial axes: the 3D axes as they are; for 2D slices
        (taken along preprocessed axis 0) the in-plane axes 1 and 2 are the 2D axes 0 and 1."""
        if dim == 3:
            return list(self.lr_axes)
        return [a - 1 for a in self.lr_axes if a > 0]

    def mirror_axes(self, axes: Optional[Sequence[int]], dim: int) -> Tuple[int, ...]:
        """nnU-Net's mirror axes `axes` with the LR axes left out under `omit` (unchanged otherwise)."""
        axes = tuple(int(a) for a in (axes or ()))
        if self.policy != "omit":
            return axes
        drop = set(self.spatial_lr_axes(dim))
        return tuple(a for a in axes if a not in drop)

    def swap_axis(self, dim: int) -> Optional[int]:
        """The spatial axis whose flip swaps the pairs (policy swap), else None."""
        if self.policy != "swap":
            return None
        axes = self.spatial_lr_axes(dim)
        return axes[0] if axes else None

    def channel_permutation(self, num_channels: int) -> List[int]:
        """Output channel c of a flipped prediction is channel perm[c] of the unflipped labels' order."""
        perm = list(range(num_channels))
        for a, b in self.pairs:
            if max(a, b) >= num_channels:
                raise InputError(f"left/right pair ({a}, {b}) outside the {num_channels} output channels")
            perm[a], perm[b] = b, a
        return perm

    def describe(self) -> str:
        """One line: what was chosen, along which axis, for which pairs, and why."""
        if not self.sided:
            return f"left/right mirroring: {self.policy} ({self.reason or 'no left/right classes; nothing to swap'})"
        pairs = ", ".join(f"{a}<->{b}" for a, b in self.pair_names) or "none"
        axes = "/".join(map(str, self.lr_axes)) if self.lr_axes else "unknown"
        extra = f"; unpaired sided classes: {', '.join(self.unpaired)}" if self.unpaired else ""
        why = f" ({self.reason})" if self.reason else ""
        return (f"left/right mirroring: {self.policy} (asked: {self.requested}); patient left-right = "
                f"preprocessed axis {axes}; pairs: {pairs}{extra}{why}")


def decide(class_names: Sequence[str], lr_axes: Optional[Sequence[int]], requested: str = DEFAULT_POLICY,
           annotated: Optional[Mapping[str, Iterable[str]]] = None) -> MirroringPlan:
    """The policy that applies to `class_names` (foreground classes, label value = position + 1) with
    the patient's LR axis among `lr_axes` (preprocessed axes; None: unknown). `annotated`: classes per
    case of a partially labelled dataset (None: every case labels every class)."""
    check_policy(requested)
    names = [canonical(n) for n in class_names]
    idx, unpaired = sided_pairs(names)
    pairs = [(a + 1, b + 1) for a, b in idx]
    pair_names = [(names[a], names[b]) for a, b in idx]
    known = lr_axes is not None
    axes = sorted({int(a) for a in lr_axes}) if known else [0, 1, 2]

    def plan(policy: str, reason: str = "") -> MirroringPlan:
        return MirroringPlan(requested, policy, axes, pairs, pair_names, unpaired, names, reason)

    if not (pairs or unpaired):
        return plan("nnunet")
    if requested == "nnunet":
        return plan("nnunet", "nnU-Net's default: a left-right flip keeps the labels of sided classes")
    if requested == "omit":
        return plan("omit", "" if known else "orientation unknown: every axis may be left-right")
    if not known:
        return plan("omit", "swap needs the left-right axis, but the image orientation is unknown")
    if len(axes) != 1:
        return plan("omit", f"cases disagree on the left-right axis ({'/'.join(map(str, axes))}); swap needs one")
    if unpaired:
        return plan("omit", f"swap needs both sides of each sided class; no partner for {', '.join(unpaired)}")
    one_sided = _one_sided_case(annotated or {}, pair_names)
    if one_sided is not None:
        case, name = one_sided
        return plan("omit", f"case {case} annotates {name} but not its partner (the annotated mask is not "
                            "flipped with the patch)")
    return plan("swap")


def _one_sided_case(annotated: Mapping[str, Iterable[str]],
                    pair_names: Sequence[Tuple[str, str]]) -> Optional[Tuple[str, str]]:
    for case in sorted(annotated):
        have = {canonical(n) for n in annotated[case]}
        for a, b in pair_names:
            if (a in have) != (b in have):
                return case, a if a in have else b
    return None


def image_lr_axes(reader: str, images: Mapping[str, str], transpose_forward: Sequence[int]) -> Optional[List[int]]:
    """The preprocessed axes that are LR in the images `images` ({case: first channel file}) as
    `reader` (plans' image_reader_writer) returns them; None when that cannot be known (a reader
    without geometry, or a file whose header SimpleITK cannot read)."""
    if reader in RAS_READERS:
        return [preprocessed_axis(2, transpose_forward)]
    if reader not in HEADER_READERS:
        return None
    import SimpleITK as sitk

    found = set()
    for case, path in sorted(images.items()):
        r = sitk.ImageFileReader()
        r.SetFileName(str(path))
        try:
            r.ReadImageInformation()
        except RuntimeError:
            log.warning("%s: image header unreadable by SimpleITK; left-right axis unknown", path)
            return None
        found.add(preprocessed_axis(lr_array_axis(r.GetDirection()), transpose_forward))
    return sorted(found) if found else None


def is_region_based(dataset_json: Mapping) -> bool:
    """True for nnU-Net region-based labels (a label given as a list of ids), whose pairs are not handled."""
    return any(isinstance(v, (list, tuple)) for v in dataset_json["labels"].values())


def mirroring_for_dataset(raw_folder: Path, dataset_json: Mapping, plans: Mapping,
                          requested: str = DEFAULT_POLICY) -> MirroringPlan:
    """The decision for a raw dataset (its training images' headers, its classes, its
    annotated_classes.json) under `plans` (reader and transpose_forward); logged in one line."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets


    check_policy(requested)
    if is_region_based(dataset_json):
        plan = MirroringPlan(requested, "nnunet", [], reason="region-based labels: nnU-Net's mirroring is kept")
        log.info("%s: %s", Path(raw_folder).name, plan.describe())
        return plan
    names = label_names(dataset_json)
    cases = get_filenames_of_train_images_and_targets(str(raw_folder), dict(dataset_json))
    images = {c: v["images"][0] for c, v in cases.items()}
    lr = image_lr_axes(str(plans["image_reader_writer"]), images, plans["transpose_forward"])
    plan = decide(names, lr, requested, read_annotated_classes(raw_folder, names))
    log.info("%s: %s", Path(raw_folder).name, plan.describe())
    return plan


def recorded(plans: Mapping) -> Optional[MirroringPlan]:
    """The decision recorded in `plans`, or None for plans made without one."""
    rec = (plans.get("suprem") or {}).get("mirroring")
    return None if rec is None else MirroringPlan.from_dict(rec, f"plans {plans.get('plans_name', '?')}")
