"""Phantom source profiles: each mimics a real source's classes, spacing, contrast phase and noise;
their datasets merge like real sources (no false duplicates, annotated classes kept)."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from suprem_nnunet.dataset.raw import read_annotated_classes
from suprem_nnunet.labels import canonical, host_of
from suprem_nnunet.synth import PHANTOM_CLASSES, PHASE_OFFSETS, PROFILES, PhantomGenerator, get_profile
from suprem_nnunet.synth.dataset import case_seed, make_profile_dataset

BTCV13 = {"spleen", "kidney_right", "kidney_left", "gall_bladder", "esophagus", "liver", "stomach", "aorta",
          "postcava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right", "adrenal_gland_left"}


def test_profile_table_is_consistent():
    assert {p.name for p in PROFILES} == {"btcv", "lits", "kits", "msd_pancreas", "totalsegmentator"}
    assert len({p.dataset_name for p in PROFILES}) == len(PROFILES)
    for p in PROFILES:
        assert all(canonical(c) == c and c in PHANTOM_CLASSES for c in p.classes), p.name
        assert len(set(p.classes)) == len(p.classes) and p.phase in PHASE_OFFSETS
        assert len(p.spacing) == len(p.shape) == 3 and p.slice_thickness >= p.spacing[2] and p.noise_hu > 0
    assert set(get_profile("btcv").classes) == BTCV13
    assert set(get_profile("lits").classes) == {"liver", "liver_tumor"}
    assert set(get_profile("kits").classes) == {"kidney_left", "kidney_right", "kidney_tumor", "kidney_cyst"}
    assert set(get_profile("MSD-Pancreas").classes) == {"pancreas", "pancreas_tumor"}
    full = get_profile("totalsegmentator").classes
    assert set(full) == {c for c in PHANTOM_CLASSES if host_of(c) is None}  # fully labelled, no lesions
    for offsets in PHASE_OFFSETS.values():
        assert set(offsets) <= set(PHANTOM_CLASSES)
    with pytest.raises(ValueError, match="unknown source profile 'amos'.*btcv"):
        get_profile("amos")


def test_phantom_draws_what_the_profiles_need():
    """Every class a profile labels is drawn; tumours lie inside their host organ."""
    needed = {c for p in PROFILES for c in p.classes}
    seen = {c: 0 for c in needed}
    for seed in range(3):
        ph = PhantomGenerator(seed)((48, 48, 48), (6.5, 6.5, 6.5), noise_hu=0)
        for c in needed:
            seen[c] += int(ph.masks[c].sum() > 0)
        for tumour, host in ph.hosts.items():
            grown = ndimage.binary_dilation(ph.masks[host], iterations=4)  # tumour radius <= 20 mm
            assert np.all(grown[ph.masks[tumour]]), tumour  # clipped to its organ
            assert host.startswith(host_of(tumour))
    assert all(n >= 2 for n in seen.values()), seen
    ph = PhantomGenerator(0)((64, 64, 64), (5, 5, 5), noise_hu=0)
    med = {k: float(np.median(ph.image[ndimage.binary_erosion(ph.masks[k])]))
           for k in ("esophagus", "portal_vein_and_splenic_vein", "adrenal_gland_left") if
           ndimage.binary_erosion(ph.masks[k]).sum() > 3}
    assert 140 <= med["portal_vein_and_splenic_vein"] <= 210 and 30 <= med.get("esophagus", 50) <= 70


@pytest.mark.parametrize("profile", [p.name for p in PROFILES])
def test_profile_dataset_holds_only_its_classes(profile, tmp_path):
    p = get_profile(profile)
    folder = make_profile_dataset(20, p, num_train=1, num_test=1, seed=3, raw_root=tmp_path, progress=False)
    assert folder.name == f"Dataset020_{p.dataset_name}"
    dj = json.loads((folder / "dataset.json").read_text())
    assert list(dj["labels"]) == ["background", *p.classes]
    assert dj["synth"]["profile"] == p.name and dj["synth"]["phase"] == p.phase
    ann = read_annotated_classes(folder)
    assert set(ann) == {f"{p.dataset_name.lower()}_000", f"{p.dataset_name.lower()}_001"}
    assert all(v == sorted(p.classes) for v in ann.values())
    case = f"{p.dataset_name.lower()}_000"
    img = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz")))
    assert np.allclose(img.GetSpacing(), p.spacing) and img.GetSize() == p.shape  # as declared
    assert set(np.unique(lab)) <= set(range(len(p.classes) + 1))
    # the same case regenerated: every drawn structure is in the image, only the profile's are labelled
    ph = PhantomGenerator(case_seed(3, 0, p.name))(p.shape, p.spacing, noise_hu=p.noise_hu, hu_offsets=p.hu_offsets,
                                                   slice_thickness=p.slice_thickness)
    assert np.array_equal(sitk.GetArrayFromImage(img), ph.image)
    for name in PHANTOM_CLASSES:
        m = ph.masks[name]
        if name in p.classes:
            assert np.all(lab[m] == p.classes.index(name) + 1), name
        elif ph.hosts.get(name) in p.classes:  # an unlabelled tumour counts as its organ, no hole
            assert np.all(lab[m] == p.classes.index(ph.hosts[name]) + 1), name
        else:
            assert not lab[m].any(), f"{name} is not a {p.name} class but is labelled"
    labelled = {p.classes[i - 1] for i in np.unique(lab) if i}
    assert labelled and labelled <= set(p.classes)


def test_thick_slices_blur_along_the_patient_z_only():
    """Slice thickness acts along the patient's z axis (whatever the voxel order)."""
    def edges(thickness, orientation):
        ph = PhantomGenerator(1)((40, 40, 40), (8, 8, 4), orientation, noise_hu=0, slice_thickness=thickness)
        img = sitk.GetImageFromArray(ph.image.astype(np.float32))
        img.SetSpacing(ph.spacing)
        img.SetDirection(ph.direction.flatten().tolist())
        arr = sitk.GetArrayFromImage(sitk.DICOMOrient(img, "LPS"))  # (z, y, x) in LPS
        return [float(np.abs(np.diff(arr, axis=a)).mean()) for a in range(3)]

    for orientation in ("LPS", "IPL"):  # IPL: the patient's z is the first voxel axis
        thin, thick = edges(None, orientation), edges(16.0, orientation)
        assert thick[0] < 0.8 * thin[0], orientation  # z edges soften
        assert thick[1:] == pytest.approx(thin[1:], rel=0.02), orientation  # in-plane edges do not
    with pytest.raises(ValueError, match="slice thickness"):
        PhantomGenerator(0)((8, 8, 8), (5, 5, 5), slice_thickness=0)
    lits = get_profile("lits")
    assert lits.spacing[2] >= 2.5 * lits.spacing[0] and lits.slice_thickness == lits.spacing[2]  # thick slices


@pytest.mark.parametrize("structure", ["liver", "aorta", "kidney_left"])
def test_contrast_phase_changes_attenuation_by_the_declared_amount(structure):
    """Same anatomy under the BTCV (portal-venous), KiTS (arterial) and TotalSegmentator (native) profiles."""
    medians = {}
    for name in ("btcv", "kits", "totalsegmentator"):
        p = get_profile(name)
        ph = PhantomGenerator(11)(p.shape, p.spacing, noise_hu=p.noise_hu, hu_offsets=p.hu_offsets,
                                  slice_thickness=p.slice_thickness)
        core = ndimage.binary_erosion(ph.masks[structure], iterations=2 if structure == "liver" else 1)
        assert core.sum() >= 5
        medians[name] = float(np.median(ph.image[core]))
    for name in ("kits", "totalsegmentator"):
        declared = PHASE_OFFSETS[get_profile(name).phase].get(structure, 0.0)
        assert abs(declared) >= 30
        assert medians[name] - medians["btcv"] == pytest.approx(declared, abs=12), (name, medians)


def test_cli_profiles_unknown_name_and_listing(nnunet_env, capsys):
    from suprem_nnunet.cli.synth import main

    raw = nnunet_env / "nnUNet_raw"
    assert main(["-d", "5", "--source-profile", "amos"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown source profile 'amos'" in err and "btcv" in err
    assert not any(raw.iterdir())  # nothing written
    assert main(["-d", "5", "--source-profile", "lits", "--classes", "liver"]) == 1
    assert "cannot be combined" in capsys.readouterr().err and not any(raw.iterdir())
    assert main(["--list-profiles"]) == 0
    out = capsys.readouterr().out
    assert all(p.name in out for p in PROFILES) and "portal_venous" in out and "4.5x4.5x12" in out
    assert main(["-d", "6", "--source-profile", "msd-pancreas", "--num-train", "1", "--num-test", "0",
                 "--size", "24,24,16", "--seed", "2"]) == 0
    folder = raw / "Dataset006_PhantomMSDPancreas"
    assert capsys.readouterr().out.strip() == str(folder)
    assert read_annotated_classes(folder) == {"phantommsdpancreas_000": ["pancreas", "pancreas_tumor"]}
    assert sitk.ReadImage(str(folder / "imagesTr" / "phantommsdpancreas_000_0000.nii.gz")).GetSize() == (24, 24, 16)


@pytest.mark.slow
def test_merge_of_profiles_keeps_every_case_and_its_annotations(tmp_path):
    """Phantoms of different seeds and profiles are different scans: merge flags no duplicates,
    even on a shared grid, and the merged annotated classes are the union of the sources'."""
    from dataset_conversion.merge import merge

    lits = make_profile_dataset(51, get_profile("lits"), 3, 0, raw_root=tmp_path, progress=False)
    panc = make_profile_dataset(52, get_profile("msd_pancreas"), 2, 0, shape=get_profile("lits").shape,
                                spacing=get_profile("lits").spacing, raw_root=tmp_path, progress=False)
    kits = make_profile_dataset(53, get_profile("kits"), 2, 0, raw_root=tmp_path, progress=False)
    report = merge([51, 52, 53], 54, "ProfileMix", raw_root=tmp_path, progress=False)
    assert report.duplicates == [] and report.excluded == []
    out = tmp_path / "Dataset054_ProfileMix"
    union = {}
    for f in (lits, panc, kits):
        union.update(json.loads((f / "annotated_classes.json").read_text()))
    assert json.loads((out / "annotated_classes.json").read_text()) == union and len(union) == 7
    dj = json.loads((out / "dataset.json").read_text())
    assert set(dj["labels"]) - {"background"} == {c for v in union.values() for c in v}
    assert dj["case_sources"]["phantomkits_001"]["source"] == "phantom_kits"
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "phantomlits_000.nii.gz")))
    assert {k for k, v in dj["labels"].items() if v in np.unique(lab) and v} <= {"liver", "liver_tumor"}


@pytest.mark.slow
def test_same_anatomy_is_a_duplicate_other_seeds_are_not():
    """The fingerprint merge uses: a case rescanned (other noise) matches; 10 seeds of one profile do not."""
    from dataset_conversion.duplicates import group_duplicates
    from dataset_conversion.thumbnail import Fingerprint

    p = get_profile("btcv")

    def fp(seed, noise):
        ph = PhantomGenerator(seed)(p.shape, p.spacing, noise_hu=noise, hu_offsets=p.hu_offsets,
                                    slice_thickness=p.slice_thickness)
        img = sitk.GetImageFromArray(ph.image)
        img.SetSpacing(ph.spacing)
        return Fingerprint.of(img)

    fps = [fp(case_seed(0, i, "btcv"), p.noise_hu) for i in range(10)]
    assert group_duplicates(fps) == []
    rescan = fp(case_seed(0, 3, "btcv"), 2 * p.noise_hu)  # same seed: same anatomy and noise stream
    groups = group_duplicates(fps + [rescan])
    assert len(groups) == 1 and groups[0].kept == 3 and groups[0].others[0][0] == 10
