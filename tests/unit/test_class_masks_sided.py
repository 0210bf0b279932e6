"""Per-class masks (`suprem_predict --per-class`): a tumour hosted by a union organ counts for the side it
lies in. Unit: one synthetic label map (n = 1 case, 3 classes checked)."""
from __future__ import annotations

import numpy as np

from suprem_nnunet.inference.outputs import class_masks
from suprem_nnunet.labels import host_of, parts_of


def test_kidney_cyst_goes_to_the_kidney_it_lies_in():
    assert host_of("kidney_cyst") == "kidney" and parts_of("kidney") == ("kidney_left", "kidney_right")
    ids = {"kidney_left": 1, "kidney_right": 2, "kidney_cyst": 3}
    arr = np.zeros((8, 8, 20), np.uint8)
    arr[2:6, 2:6, 2:8] = 1        # left kidney
    arr[2:6, 2:6, 12:18] = 2      # right kidney
    arr[3:5, 3:5, 6:8] = 3        # a cyst inside the left kidney
    masks = class_masks(arr, ids)
    assert masks["kidney_left"].sum() == (arr == 1).sum() + (arr == 3).sum()
    assert masks["kidney_right"].sum() == (arr == 2).sum()
    assert masks["kidney_cyst"].sum() == (arr == 3).sum()


def test_single_organ_hosts_keep_their_tumours():
    ids = {"liver": 1, "liver_tumor": 2}
    arr = np.zeros((6, 6, 6), np.uint8)
    arr[1:5, 1:5, 1:5] = 1
    arr[2:3, 2:3, 2:3] = 2
    assert class_masks(arr, ids)["liver"].sum() == 64
