import numpy as np
import pytest

from suprem_nnunet.labels import (ATLAS_CLASSES, ATLAS_IDS, BY_NAME, CLASSES, SYNONYMS, TOTALSEG_V2, atlas_id,
                                  canonical, canonical_labels, host_of, is_known, totalseg_v2_id_to_unified)

from helpers.paths import real_data

ATLAS_ORDER = ["aorta", "gall_bladder", "kidney_left", "kidney_right", "liver", "pancreas", "postcava", "spleen",
               "stomach", "adrenal_gland_left", "adrenal_gland_right", "bladder", "celiac_trunk", "colon",
               "duodenum", "esophagus", "femur_left", "femur_right", "hepatic_vessel", "intestine", "lung_left",
               "lung_right", "portal_vein_and_splenic_vein", "prostate", "rectum", "kidney_tumor", "liver_tumor",
               "pancreas_tumor", "hepatic_vessel_tumor", "lung_tumor", "colon_tumor", "kidney_cyst"]


def test_abdomenatlas_order_and_ids():
    assert list(ATLAS_CLASSES) == ATLAS_ORDER
    assert [ATLAS_IDS[n] for n in ATLAS_ORDER] == list(range(1, 33))
    assert sum(BY_NAME[n].group == "tumor" for n in ATLAS_ORDER) == 7


@pytest.mark.parametrize("alias,name", [("inferior_vena_cava", "postcava"), ("Gallbladder", "gall_bladder"),
                                        ("urinary bladder", "bladder"), ("small_bowel", "intestine"),
                                        ("celiac_truck", "celiac_trunk"), ("head_of_femur_left", "femur_left"),
                                        ("IVC", "postcava")])
def test_synonyms(alias, name):
    assert canonical(alias) == name
    assert atlas_id(alias) == ATLAS_IDS[name]


def test_names_outside_the_32_are_kept():
    assert canonical("iliopsoas_left") == "iliopsoas_left" and atlas_id("iliopsoas_left") is None
    assert is_known("autochthon_right") and not is_known("rib_left_3")
    assert canonical("Rib Left 3") == "rib_left_3"  # novel classes are allowed, normalised


def test_table_is_consistent():
    names = [c.name for c in CLASSES]
    assert len(names) == len(set(names))
    assert not set(SYNONYMS) & set(names), "a synonym shadows a class name"
    for c in CLASSES:
        if c.group == "tumor" and c.atlas_id is not None:
            assert c.host is not None
    assert host_of("liver_tumor") == "liver" and host_of("kidney_cyst") == "kidney" and host_of("liver") is None


def test_bad_names():
    with pytest.raises(ValueError):
        canonical("background")
    with pytest.raises(ValueError):
        canonical("  ")
    with pytest.raises(ValueError, match="already"):
        canonical_labels(["postcava", "inferior_vena_cava"])


def test_totalseg_v2_ids_match_real_per_class_masks():
    """Each TotalSegmentator v2 id of the real multi-label file is the id whose region best overlaps
    that class's per-class mask (the two files come from different model runs, so not voxel-identical)."""
    import SimpleITK as sitk

    folder = real_data("totalseg_example_sm")
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "seg_total_v2.nii.gz")))
    assert len(TOTALSEG_V2) == 117
    files = {p.name[:-7] for p in (folder / "segmentations").glob("*.nii.gz")}
    assert files == set(TOTALSEG_V2)
    checked = 0
    for i, name in enumerate(TOTALSEG_V2, start=1):
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "segmentations" / f"{name}.nii.gz"))) > 0
        if mask.sum() < 50:
            continue
        ids, counts = np.unique(seg[mask], return_counts=True)
        best = ids[np.argmax(np.where(ids == 0, -1, counts))]
        assert best == i, f"{name}: mask overlaps id {best} most, expected {i}"
        dsc = 2 * (mask & (seg == i)).sum() / (mask.sum() + (seg == i).sum())
        assert dsc > 0.7, (name, dsc)
        checked += 1
    assert checked > 30
    m = totalseg_v2_id_to_unified()
    assert m[63] == "postcava" and m[52] == "aorta" and m[4] == "gall_bladder" and m[21] == "bladder"
