"""Every NIfTI-based source converts from a miniature replica of its own on-disk layout."""
from __future__ import annotations


import numpy as np
import pytest

from helpers.conversion_replicas import (check_case, lps, masks, phantom, read_dataset, read_label, source_label,
                                 write)
from dataset_conversion.runner import convert
from suprem_nnunet.labels import TOTALSEG_V1, TOTALSEG_V2, totalseg_group
from suprem_nnunet.labels.sources import (ABDOMENCT1K, AMOS22, BTCV, CTORG, FLARE22, SOURCE_LABELS, WORD,
                                          unified_name)

BOTH_KIDNEYS = ("kidney_left", "kidney_right")


def spec_of(label_map, **override):
    """Replica spec {source id: phantom structure(s)} from a source label map."""
    out = {}
    for sid, name in label_map.items():
        u = unified_name(name)
        out[sid] = override.get(u, u)
    return out


def run(src, root, tmp_path, **kw):
    rep = convert(src, root, 1, "T", raw_root=tmp_path / "raw", progress=False, **kw)
    return tmp_path / "raw" / "Dataset001_T", rep


def expected_names(spec):
    out = []
    for v in spec.values():
        out.extend((v,) if isinstance(v, str) else v)
    return out


def test_btcv(tmp_path):
    spec = spec_of(BTCV)
    phs = {n: phantom(n, "RAS") for n in (1, 2)}
    for n, ph in phs.items():
        write(tmp_path / f"in/RawData/Training/img/img{n:04d}.nii.gz", ph.image, ph)
        write(tmp_path / f"in/RawData/Training/label/label{n:04d}.nii.gz", source_label(ph, spec), ph)
    write(tmp_path / "in/RawData/Testing/img/img0061.nii.gz", phs[1].image, phs[1])
    folder, rep = run("btcv", tmp_path / "in", tmp_path)
    dj, ann = read_dataset(folder)
    names = list(dj["labels"])[1:]
    assert set(names) == {unified_name(v) for v in BTCV.values()}
    assert names[:9] == ["aorta", "gall_bladder", "kidney_left", "kidney_right", "liver", "pancreas", "postcava",
                         "spleen", "stomach"]  # AbdomenAtlas order first
    assert dj["numTraining"] == 2 and (folder / "imagesTs/btcv_0061_0000.nii.gz").is_file()
    for n, ph in phs.items():
        check_case(folder, f"btcv_{n:04d}", ph, expected_names(spec))
        assert ann[f"btcv_{n:04d}"] == sorted(names)
    assert dj["case_sources"]["btcv_0001"]["source"] == "btcv"


def test_amos22_excludes_mri(tmp_path):
    spec = spec_of(AMOS22)
    layout = {"imagesTr/amos_0001": 1, "imagesVa/amos_0002": 2, "imagesTr/amos_0510": 3}
    phs = {}
    for stem, seed in layout.items():
        ph = phs[stem.split("/")[1]] = phantom(seed, "LAS")
        write(tmp_path / f"in/{stem}.nii.gz", ph.image, ph)
        write(tmp_path / f"in/{stem.replace('images', 'labels')}.nii.gz", source_label(ph, spec), ph)
    write(tmp_path / "in/imagesTs/amos_0003.nii.gz", phs["amos_0001"].image, phs["amos_0001"])
    folder, rep = run("amos22", tmp_path / "in", tmp_path)
    check_case(folder, "amos_0001", phs["amos_0001"], expected_names(spec))
    check_case(folder, "amos_0002", phs["amos_0002"], expected_names(spec))
    assert not (folder / "imagesTr/amos_0510_0000.nii.gz").exists()
    assert [e["case"] for e in rep.excluded] == ["amos_0510"] and "MRI" in rep.excluded[0]["reason"]
    assert (folder / "imagesTs/amos_0003_0000.nii.gz").is_file()
    assert read_dataset(folder)[0]["labels"]["prostate"] > 0


def test_word_splits_adrenal_by_patient_side(tmp_path):
    spec = spec_of(WORD, adrenal_gland=("adrenal_gland_left", "adrenal_gland_right"))
    phs = {}
    for i, tag in enumerate(("Tr", "Val", "Ts"), start=1):
        ph = phs[f"word_{i:04d}"] = phantom(10 + i, "LPS" if i != 2 else "RPI")  # one stored right-to-left
        write(tmp_path / f"in/images{tag}/word_{i:04d}.nii.gz", ph.image, ph)
        write(tmp_path / f"in/labels{tag}/word_{i:04d}.nii.gz", source_label(ph, spec), ph)
    folder, rep = run("word", tmp_path / "in", tmp_path)
    dj, ann = read_dataset(folder)
    assert "adrenal_gland" not in dj["labels"] and dj["numTraining"] == 3
    for case, ph in phs.items():
        check_case(folder, case, ph, expected_names(spec))
        assert {"adrenal_gland_left", "adrenal_gland_right", "femur_left"} <= set(ann[case])
    assert {c["case"]: c["split"] for c in rep.cases}["word_0002"] == "validation"


@pytest.mark.parametrize("task,stem,spec", [
    ("03", "liver", {1: "liver", 2: "liver_tumor"}),
    ("06", "lung", {1: "lung_tumor"}),
    ("07", "pancreas", {1: "pancreas", 2: "pancreas_tumor"}),
    ("08", "hepaticvessel", {1: "hepatic_vessel", 2: "hepatic_vessel_tumor"}),
    ("09", "spleen", {1: "spleen"}),
    ("10", "colon", {1: "colon_tumor"}),
])
def test_msd(tmp_path, task, stem, spec):
    assert {k: unified_name(v) for k, v in SOURCE_LABELS[f"msd_task{task}"].items()} == spec
    base = tmp_path / "in" / f"Task{task}_X"
    ph = phantom(int(task), "RAS")
    write(base / f"imagesTr/{stem}_1.nii.gz", ph.image, ph)
    write(base / f"labelsTr/{stem}_1.nii.gz", source_label(ph, spec).astype(np.float32), ph)  # float label
    (base / f"imagesTr/._{stem}_1.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (base / f"labelsTr/._{stem}_1.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    write(base / f"imagesTs/{stem}_7.nii.gz", ph.image, ph)
    folder, rep = run(f"msd_task{task}", base, tmp_path)
    check_case(folder, f"msd{task}_1", ph, list(spec.values()))
    dj, ann = read_dataset(folder)
    assert list(dj["labels"])[1:] == list(spec.values())
    assert ann == {f"msd{task}_1": sorted(spec.values())}
    assert (folder / f"imagesTs/msd{task}_7_0000.nii.gz").is_file()
    tumors = [v for v in spec.values() if v.endswith("_tumor")]
    assert set(dj["tumor_hosts"]) == set(tumors)


def test_lits_uncompressed_nifti_in_batches(tmp_path):
    spec = {1: "liver", 2: "liver_tumor"}
    ph = phantom(5, "LPS")
    write(tmp_path / "in/Training Batch 1/volume-0.nii", ph.image, ph)
    write(tmp_path / "in/Training Batch 1/segmentation-0.nii", source_label(ph, spec), ph)
    write(tmp_path / "in/Test/test-volume-3.nii", ph.image, ph)
    folder, rep = run("lits", tmp_path / "in", tmp_path)
    check_case(folder, "lits_0", ph, ["liver", "liver_tumor"])
    dj, _ = read_dataset(folder)
    assert dj["tumor_hosts"] == {"liver_tumor": "liver"}
    assert dj["case_sources"]["lits_0"]["source_id"] == "volume-0"
    assert (folder / "imagesTs/lits_test3_0000.nii.gz").is_file()


@pytest.mark.parametrize("year", ["19", "21", "23"])
def test_kits_axis_quirk_and_kidney_split(tmp_path, year):
    spec = {1: BOTH_KIDNEYS, 2: "kidney_tumor"}
    if year != "19":
        spec[3] = "kidney_cyst"
    ph = phantom(21, "IPL", shape=(24, 28, 32), spacing=(10.0, 10.0, 11.0))  # KiTS: axes stored (z, y, x)
    seg_name = "aggregated_MAJ_seg.nii.gz" if year == "21" else "segmentation.nii.gz"
    write(tmp_path / "in/data/case_00000/imaging.nii.gz", ph.image, ph)
    write(tmp_path / f"in/data/case_00000/{seg_name}", source_label(ph, spec), ph)
    if year == "19":
        write(tmp_path / "in/data/case_00210/imaging.nii.gz", ph.image, ph)  # test set: no label
    folder, rep = run(f"kits{year}", tmp_path / "in", tmp_path)
    expected = ["kidney_left", "kidney_right", "kidney_tumor"] + (["kidney_cyst"] if year != "19" else [])
    check_case(folder, f"kits{year}_00000", ph, expected)
    lab, img = read_label(folder, f"kits{year}_00000")
    assert img.GetSize() == (32, 28, 24)  # (x, y, z) after reorientation of the (z, y, x) storage
    dj, ann = read_dataset(folder)
    assert dj["tumor_hosts"]["kidney_tumor"] == "kidney"
    assert dj["tumor_host_classes"]["kidney_tumor"] == ["kidney_left", "kidney_right"]
    if year == "19":
        assert (folder / "imagesTs/kits19_00210_0000.nii.gz").is_file()


def test_abdomenct1k_splits_kidneys(tmp_path):
    spec = spec_of(ABDOMENCT1K, kidney=BOTH_KIDNEYS)
    ph = phantom(31, "RAS")
    write(tmp_path / "in/AbdomenCT-1K-ImagePart1/Case_00001_0000.nii.gz", ph.image, ph)
    write(tmp_path / "in/Mask/Case_00001.nii.gz", source_label(ph, spec), ph)
    folder, _ = run("abdomenct1k", tmp_path / "in", tmp_path)
    check_case(folder, "abdomenct1k_00001", ph, ["liver", "kidney_left", "kidney_right", "spleen", "pancreas"])


def test_flare22(tmp_path):
    spec = spec_of(FLARE22)
    ph = phantom(41, "RAS")
    write(tmp_path / "in/images/FLARE22_Tr_0001_0000.nii.gz", ph.image, ph)
    write(tmp_path / "in/labels/FLARE22_Tr_0001.nii.gz", source_label(ph, spec), ph)
    folder, _ = run("flare22", tmp_path / "in", tmp_path)
    check_case(folder, "flare22_0001", ph, expected_names(spec))


def test_flare23_partial_labels_per_case(tmp_path):
    full = spec_of(FLARE22)
    tumor = 14
    ph1, ph2 = phantom(42, "RAS"), phantom(43, "RAS")
    partial = {1: "liver", 2: "kidney_right", tumor: ("liver_tumor", "kidney_tumor")}
    write(tmp_path / "in/imagesTr/FLARE23_0001_0000.nii.gz", ph1.image, ph1)
    write(tmp_path / "in/labelsTr/FLARE23_0001.nii.gz", source_label(ph1, partial), ph1)
    write(tmp_path / "in/imagesTr/FLARE23_0002_0000.nii.gz", ph2.image, ph2)
    write(tmp_path / "in/labelsTr/FLARE23_0002.nii.gz", source_label(ph2, full), ph2)
    write(tmp_path / "in/imagesTr/FLARE23_0003_0000.nii.gz", ph2.image, ph2)  # unlabelled
    folder, rep = run("flare23", tmp_path / "in", tmp_path)
    dj, ann = read_dataset(folder)
    assert ann["flare23_0002"] == sorted(expected_names(full))
    m = masks(ph1)
    # case 1 annotates only what its file holds: liver, right kidney and lesions
    from scipy import ndimage
    in_right = (ndimage.binary_dilation(m["kidney_tumor"]) & m["kidney_right"]).any()
    kidney_lesion = "kidney_tumor" if in_right else "tumor"  # in the unlabelled left kidney: host unknown
    # lesions are partial (positive-only): present in the label map, never listed as annotated
    assert ann["flare23_0001"] == ["kidney_right", "liver"]
    assert set(dj["partial_classes"]["flare23_0001"]) == {"liver_tumor", "kidney_tumor", "pancreas_tumor", "tumor"}
    lab, _ = read_label(folder, "flare23_0001")
    ids = dj["labels"]
    # each lesion became the tumour class of the organ around it (kidney_left is unlabelled in
    # case 1, so the kidney lesion is judged by the background and the right kidney only if adjacent)
    want = lps(m["liver_tumor"].astype(np.uint8), ph1).astype(bool)
    assert np.array_equal(lab == ids["liver_tumor"], want)
    assert np.array_equal(lab == ids[kidney_lesion], lps(m["kidney_tumor"].astype(np.uint8), ph1).astype(bool))
    assert "tumor" in ids and dj["tumor_hosts"]["liver_tumor"] == "liver"
    assert (folder / "imagesTs/flare23_0003_0000.nii.gz").is_file()
    assert "flare23_0003" not in ann


def test_ctorg_float_labels_and_both_sided_organs(tmp_path):
    spec = spec_of(CTORG, lung=("lung_left", "lung_right"), kidney=BOTH_KIDNEYS)
    ph = phantom(51, "RAS")
    write(tmp_path / "in/OrganSegmentations/volume-0.nii.gz", ph.image, ph)
    write(tmp_path / "in/OrganSegmentations/labels-0.nii.gz", source_label(ph, spec).astype(np.float32), ph)
    folder, _ = run("ctorg", tmp_path / "in", tmp_path)
    check_case(folder, "ctorg_0", ph, expected_names(spec))
    dj, _ = read_dataset(folder)
    assert {"lung_left", "lung_right", "kidney_left", "kidney_right", "bone", "brain"} <= set(dj["labels"])


def test_abdomenatlas_masks_and_combined(tmp_path):
    from suprem_nnunet.labels import ATLAS_CLASSES
    ph1, ph2 = phantom(61, "RAS"), phantom(62, "LPS")
    m = masks(ph1)
    seg = tmp_path / "in/BDMAP_00000001/segmentations"
    for name in ATLAS_CLASSES[:25] + ("liver_tumor",):
        write(seg / f"{name}.nii.gz", m.get(name, np.zeros(ph1.image.shape, bool)).astype(np.uint8), ph1)
    write(tmp_path / "in/BDMAP_00000001/ct.nii.gz", ph1.image, ph1)
    combined = {i + 1: n for i, n in enumerate(ATLAS_CLASSES) if n in masks(ph2)}
    write(tmp_path / "in/BDMAP_00000002/ct.nii.gz", ph2.image, ph2)
    write(tmp_path / "in/BDMAP_00000002/combined_labels.nii.gz", source_label(ph2, combined), ph2)
    folder, _ = run("abdomenatlas11", tmp_path / "in", tmp_path)
    dj, ann = read_dataset(folder)
    assert list(dj["labels"])[1:] == list(ATLAS_CLASSES)  # label id == AbdomenAtlas id
    organs = [n for n in ATLAS_CLASSES[:25] if n in m]
    check_case(folder, "atlas_00000001", ph1, organs + ["liver_tumor"])
    assert ann["atlas_00000001"] == sorted(ATLAS_CLASSES[:25] + ("liver_tumor",))
    check_case(folder, "atlas_00000002", ph2, list(combined.values()))
    assert set(ann["atlas_00000002"]) >= set(ATLAS_CLASSES[:25])


_TS_DIRECT = ("spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas", "aorta",
              "inferior_vena_cava", "iliopsoas_left", "iliopsoas_right", "autochthon_left", "autochthon_right",
              "urinary_bladder", "colon", "duodenum", "esophagus", "small_bowel", "portal_vein_and_splenic_vein")


def _totalseg_case(root, ph, version):
    """Write sXXXX/ct.nii.gz + one mask per class; returns the truth {unified name: mask}."""
    names = TOTALSEG_V1 if version == 1 else TOTALSEG_V2
    m = masks(ph)
    arrays = {n: np.zeros(ph.image.shape, bool) for n in names}
    for n in _TS_DIRECT:
        arrays[n] = m[unified_name(n)]
    arrays["vertebrae_L1"] = m["vertebrae"]
    for side in ("left", "right"):  # lung lobes: lower and upper half of the lung
        lung = m[f"lung_{side}"]
        cut = int(np.median(np.nonzero(lung)[0]))
        lower, upper = lung.copy(), lung.copy()
        lower[cut:] = False
        upper[:cut] = False
        arrays[f"lung_lower_lobe_{side}"], arrays[f"lung_upper_lobe_{side}"] = lower, upper
    if version == 2:
        arrays["kidney_cyst_right"] = m["kidney_cyst"]
    for n, arr in arrays.items():
        write(root / "segmentations" / f"{n}.nii.gz", arr.astype(np.uint8), ph)
    write(root / "ct.nii.gz", ph.image, ph)
    return {"vertebrae_l1": m["vertebrae"]}


@pytest.mark.parametrize("version", [1, 2])
def test_totalsegmentator_groups(tmp_path, version):
    ph = phantom(70 + version, "RAS")
    truth = _totalseg_case(tmp_path / "in/s0000", ph, version)
    (tmp_path / "in/meta.csv").write_text("image_id;age;gender;split\ns0000;60;m;val\n")
    folder, rep = run(f"totalseg_v{version}", tmp_path / "in", tmp_path)
    dj, ann = read_dataset(folder)
    names = TOTALSEG_V1 if version == 1 else TOTALSEG_V2
    assert len(dj["labels"]) - 1 == len({unified_name(n) for n in names})
    expected = [unified_name(n) for n in _TS_DIRECT] + ["lung_left", "lung_right", "vertebrae_l1"]
    if version == 2:
        expected.append("kidney_cyst")
    check_case(folder, f"tsv{version}_s0000", ph, expected, truth=truth)
    assert rep.cases[0]["split"] == "val"
    assert ("heart_myocardium" if version == 1 else "heart") in dj["labels"]
    assert ann[f"tsv{version}_s0000"] == sorted(set(dj["labels"]) - {"background"})
    # only the organs group
    convert(f"totalseg_v{version}", tmp_path / "in", 2, "O", raw_root=tmp_path / "raw", progress=False,
            options={"groups": "organs"})
    dj2, ann2 = read_dataset(tmp_path / "raw" / "Dataset002_O")
    organs = {unified_name(n) for n in names if totalseg_group(n, version) == "organs"}
    assert set(dj2["labels"]) - {"background"} == organs and "iliopsoas_left" not in dj2["labels"]
    assert set(ann2[f"tsv{version}_s0000"]) == organs


def test_dap_atlas_matches_autopet_ct_by_name(tmp_path):
    ph = phantom(81, "LPS")
    spec = {13: "liver", 15: "kidney_left", 16: "kidney_right", 26: "spleen", 114: "aorta", 117: "postcava",
            1: "stomach"}  # 1 = 'Left to annotate': background
    write(tmp_path / "in/ATLAS_DATASET/AutoPET_0011f3deaf_10445.nii.gz", source_label(ph, spec), ph)
    write(tmp_path / "in/ATLAS_DATASET/AutoPET_0143bab87a_33529.nii.gz", source_label(ph, spec), ph)
    write(tmp_path / "pet/FDG-PET-CT-Lesions/PETCT_0011f3deaf/03-23-2003-NA-PET-CT Ganzkoerper-10445/CT.nii.gz",
          ph.image, ph)
    with pytest.raises(Exception, match="no AutoPET CT for this mask"):
        convert("dap_atlas", tmp_path / "in", 1, "D", raw_root=tmp_path / "raw", progress=False,
                options={"images": str(tmp_path / "pet")})
    rep = convert("dap_atlas", tmp_path / "in", 1, "D", raw_root=tmp_path / "raw", progress=False,
                  skip_bad=True, options={"images": str(tmp_path / "pet")})
    folder = tmp_path / "raw/Dataset001_D"
    check_case(folder, "dap_0011f3deaf_10445", ph, ["liver", "kidney_left", "kidney_right", "spleen", "aorta",
                                                    "postcava"], absent=["stomach"])
    assert [s["case"] for s in rep.skipped] == ["dap_0143bab87a_33529"]
    dj, _ = read_dataset(folder)
    assert "rib_left_1" in dj["labels"] and "clavicula_left" in dj["labels"]
