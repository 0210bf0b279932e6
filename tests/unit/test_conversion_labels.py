"""Source label maps and the patient-side split, without files."""
from __future__ import annotations

import numpy as np

import helpers.conversion_replicas  # noqa: F401  (puts the repository on sys.path)
from dataset_conversion.labelspace import LabelMapper, unified_order
from dataset_conversion.sides import Geometry, split_left_right
from suprem_nnunet.labels import ATLAS_CLASSES, is_known
from suprem_nnunet.labels.sources import SOURCE_LABELS, sides_of, unified_name


def test_every_source_maps_to_known_unified_classes():
    open_ended = {"totalseg_v1", "totalseg_v2", "dap_atlas"}  # keep their extra classes by name
    for key, m in SOURCE_LABELS.items():
        names = [unified_name(v) for v in m.values() if v is not None]
        assert len(names) == len(set(names)) or key in open_ended, key  # lobes merge in TotalSegmentator
        if key not in open_ended:
            assert all(is_known(n) for n in names), (key, [n for n in names if not is_known(n)])
    assert unified_order(reversed(ATLAS_CLASSES)) == list(ATLAS_CLASSES)
    assert sides_of("kidney") == ("kidney_left", "kidney_right") and sides_of("liver") is None


def _geometry(flip: bool) -> Geometry:
    d = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
    origin = (31.0 if flip else -31.0, 0.0, 0.0)
    return Geometry((2.0, 2.0, 2.0), origin, d)


def test_split_follows_the_patient_not_the_array():
    for flip in (False, True):  # x index grows to patient left (LPS) or right (RAS)
        geo = _geometry(flip)
        mask = np.zeros((4, 6, 32), bool)
        mask[1:3, 1:4, 2:6] = True  # array-left blob
        mask[1:3, 1:4, 24:30] = True  # array-right blob
        left, right = split_left_right(mask, geo, midline=0.0)
        assert left.sum() + right.sum() == mask.sum() and not (left & right).any()
        # LPS: world x = -31 + 2 i, so low indices lie at the patient's right; flipped: at the left
        low_blob, high_blob = mask.copy(), mask.copy()
        low_blob[..., 16:] = False
        high_blob[..., :16] = False
        assert np.array_equal(right if not flip else left, low_blob)
        assert np.array_equal(left if not flip else right, high_blob)


def test_straddling_component_is_cut_at_the_midline():
    geo = _geometry(False)
    mask = np.zeros((3, 3, 32), bool)
    mask[1, 1, 4:28] = True  # one horseshoe-like component across the midline (x = 0 at i = 15.5)
    left, right = split_left_right(mask, geo, midline=0.0)
    assert left[1, 1, 16:28].all() and right[1, 1, 4:16].all()


def test_tumour_voxels_decide_side_with_their_organ():
    m = LabelMapper({1: "kidney", 2: "kidney tumor"})
    assert m.classes == ["kidney_left", "kidney_right", "kidney_tumor"]
    src = np.zeros((3, 3, 32), np.int16)
    src[1, 1, 20:24] = 1
    src[1, 1, 24:30] = 2  # a tumour making up most of the left kidney
    src[1, 1, 2:8] = 1
    out = m.apply(src, _geometry(False), image=np.full(src.shape, 40))
    assert (out[1, 1, 20:24] == 1).all() and (out[1, 1, 2:8] == 2).all() and (out[1, 1, 24:30] == 3).all()
