"""Class matching by name through the label table (pure data: label maps in, mapping out)."""
import pytest

from suprem_nnunet.evaluation.class_matching import format_mapping, match_classes
from suprem_nnunet.labels import ATLAS_IDS, parts_of


def _by_gt(mapping):
    return {m.gt_class: m for m in mapping.matches}


def test_same_ids_different_classes_match_by_name_not_id():
    model = {"liver": 1, "spleen": 2}
    gt = {"background": 0, "spleen": 1, "Liver": 2, "aorta": 3}
    m = _by_gt(match_classes(model, gt))
    assert m["spleen"].pred_ids == (2,) and m["spleen"].gt_ids == (1,)
    assert m["liver"].pred_ids == (1,) and m["liver"].gt_ids == (2,)
    assert not m["aorta"].scored and match_classes(model, gt).not_predicted == ["aorta"]


def test_synonyms_and_unused_model_classes():
    mapping = match_classes({"gall_bladder": 1, "postcava": 2, "stomach": 3},
                            {"gallbladder": 4, "inferior_vena_cava": 7})
    m = _by_gt(mapping)
    assert m["gall_bladder"].rule == "synonym" and m["gall_bladder"].pred_ids == (1,)
    assert m["postcava"].pred_ids == (2,) and m["postcava"].gt_name == "inferior_vena_cava"
    assert mapping.unused_model_classes == ("stomach",)


def test_union_of_parts_with_hosted_tumours_from_atlas_model():
    """A 32-class AbdomenAtlas model on KiTS-like and BTCV-like label sets."""
    assert parts_of("kidneys") == ("kidney_left", "kidney_right")
    kits = _by_gt(match_classes(ATLAS_IDS, {"kidney": 1, "kidney_tumor": 2, "renal_cyst": 3}))
    # GT labels tumour and cyst separately (KiTS23): kidney is the two sides only
    assert kits["kidney"].pred_classes == ("kidney_left", "kidney_right") and kits["kidney"].rule == "parts"
    assert kits["kidney_tumor"].pred_ids == (26,) and kits["kidney_cyst"].pred_ids == (32,)
    kits19 = _by_gt(match_classes(ATLAS_IDS, {"kidney": 1, "kidney_tumor": 2}))  # cysts are drawn as kidney
    assert kits19["kidney"].pred_classes == ("kidney_left", "kidney_right", "kidney_cyst")
    btcv = _by_gt(match_classes(ATLAS_IDS, {"liver": 1, "kidney": 2, "lungs": 3, "adrenal_gland": 4}))
    # no tumour classes in the GT: an organ is the model's organ plus the tumours it hosts
    assert set(btcv["liver"].pred_classes) == {"liver", "liver_tumor", "hepatic_vessel_tumor"}
    assert set(btcv["kidney"].pred_ids) == {3, 4, 26, 32} and btcv["kidney"].rule == "parts + hosted tumours"
    assert set(btcv["lung"].pred_classes) == {"lung_left", "lung_right", "lung_tumor"}
    assert btcv["adrenal_gland"].pred_ids == (10, 11)


def test_sided_gt_is_not_predicted_by_a_union_model_and_generic_tumor_blocks_hosting():
    m = _by_gt(match_classes({"kidney": 1, "liver": 2, "liver_tumor": 3}, {"kidney_left": 1, "liver": 2, "lesion": 3}))
    assert not m["kidney_left"].scored  # one side cannot be cut out of 'kidney'
    assert m["liver"].pred_ids == (2,)  # the GT labels lesions itself (generic 'tumor')
    assert not m["tumor"].scored


def test_gt_tumours_the_model_cannot_predict_join_the_gt_organ():
    m = _by_gt(match_classes({"liver": 1, "spleen": 2}, {"liver": 1, "liver_tumor": 2}))
    assert m["liver"].gt_ids == (1, 2) and m["liver"].pred_ids == (1,)
    assert not m["liver_tumor"].scored


def test_duplicate_after_synonyms_is_one_clear_error():
    with pytest.raises(ValueError, match="names 'gall_bladder' twice"):
        match_classes({"gallbladder": 1, "gall_bladder": 2}, {"liver": 1})


def test_mapping_json_and_text():
    mapping = match_classes(ATLAS_IDS, {"kidney": 1, "brain": 2}).to_json()
    assert mapping["not_predicted"] == ["brain"]
    kid = mapping["classes"][0]
    assert kid["status"] == "scored" and tuple(kid["pred_ids"]) == (3, 4, 26, 32)
    text = format_mapping(mapping)
    assert "kidney_left + kidney_right + kidney_tumor + kidney_cyst" in text and "brain" in text


def test_union_parts_are_rows_of_the_table():
    from suprem_nnunet.labels import BY_NAME, PARTS

    assert set(PARTS) == {"kidney", "lung", "adrenal_gland"}
    assert all(p in BY_NAME and not PARTS.get(p) for parts in PARTS.values() for p in parts)
