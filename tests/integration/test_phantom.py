import json

import numpy as np
import pytest
import SimpleITK as sitk

from suprem_nnunet.dataset.raw import read_annotated_classes
from suprem_nnunet.synth import PHANTOM_CLASSES, PhantomGenerator, direction_from_code
from suprem_nnunet.synth.dataset import make_phantom_dataset


def _world_x(ph, mask):
    """Mean LPS x (patient left is +) of a mask's voxels."""
    k, j, i = np.nonzero(mask)
    idx = np.stack([i, j, k]).astype(float) * np.array(ph.spacing)[:, None]
    return float((np.array(ph.origin)[:, None] + ph.direction @ idx)[0].mean())


def test_deterministic_per_seed():
    a = PhantomGenerator(3)((32, 32, 32), (8, 8, 8))
    b = PhantomGenerator(3)((32, 32, 32), (8, 8, 8))
    c = PhantomGenerator(4)((32, 32, 32), (8, 8, 8))
    assert np.array_equal(a.image, b.image)
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in PHANTOM_CLASSES)
    assert not np.array_equal(a.image, c.image)


def test_hounsfield_units_are_realistic():
    ph = PhantomGenerator(0)((64, 64, 64), (5, 5, 5), noise_hu=0)
    med = {k: float(np.median(ph.image[m])) for k, m in ph.masks.items() if m.sum() > 30}
    assert ph.image.min() <= -950  # air outside the body
    for organ in ("liver", "spleen", "pancreas"):
        assert 60 <= med[organ] <= 130, (organ, med[organ])
    assert 150 <= med["aorta"] <= 250
    assert 300 <= med["vertebrae"] <= 1200
    for muscle in ("autochthon_left", "iliopsoas_right"):
        assert 30 <= med[muscle] <= 70
    assert -20 <= med["gall_bladder"] <= 30
    body = ph.image > -500
    fat = (ph.image > -150) & (ph.image < -50) & body
    assert fat.sum() > 0.05 * body.sum()  # subcutaneous and visceral fat around -100


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "LAS", "RPI"])
def test_left_right_follow_the_patient_not_the_array(orientation):
    ph = PhantomGenerator(1)((40, 40, 40), (8, 8, 8), orientation)
    for side in ("kidney", "iliopsoas", "autochthon"):
        assert _world_x(ph, ph.masks[f"{side}_left"]) > 20 > -20 > _world_x(ph, ph.masks[f"{side}_right"])
    assert _world_x(ph, ph.masks["liver"]) < 0 < _world_x(ph, ph.masks["spleen"])
    assert np.allclose(ph.direction, direction_from_code(orientation))


def test_tumours_lie_inside_their_organs():
    found = 0
    for seed in range(4):
        g = PhantomGenerator(seed)
        ph = g((48, 48, 48), (6, 6, 6))
        for tumour, hosts in (("liver_tumor", ["liver"]), ("pancreas_tumor", ["pancreas"]),
                              ("kidney_tumor", ["kidney_left", "kidney_right"]),
                              ("kidney_cyst", ["kidney_right"])):
            t = ph.masks[tumour]
            if t.sum() < 3:
                continue
            found += 1
            from scipy import ndimage
            grown = ndimage.binary_dilation(np.any([ph.masks[h] for h in hosts], 0), iterations=2)
            assert (t & grown).sum() / t.sum() > 0.9, tumour
    assert found >= 8


def test_anisotropic_spacing_and_shape():
    ph = PhantomGenerator(0)((50, 40, 20), (3.0, 3.5, 12.0))
    assert ph.image.shape == (20, 40, 50) and ph.image.dtype == np.int16
    assert ph.masks["liver"].sum() > 100


def test_bad_arguments():
    with pytest.raises(ValueError, match="orientation"):
        direction_from_code("LLS")
    with pytest.raises(ValueError, match="spacing"):
        PhantomGenerator(0)((16, 16, 16), (0, 1, 1))


def test_dataset_writer(tmp_path):
    folder = make_phantom_dataset(7, "Tiny", ["liver", "IVC", "iliopsoas_left"], num_train=2, num_test=1,
                                  shape=(24, 24, 16), spacing=(12, 12, 15), orientation="RAS", seed=5,
                                  raw_root=tmp_path, progress=False)
    assert folder.name == "Dataset007_Tiny"
    dj = json.loads((folder / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "liver": 1, "postcava": 2, "iliopsoas_left": 3}
    assert dj["numTraining"] == 2 and dj["channel_names"] == {"0": "CT"}
    img = sitk.ReadImage(str(folder / "imagesTr" / "tiny_000_0000.nii.gz"))
    lab = sitk.ReadImage(str(folder / "labelsTr" / "tiny_000.nii.gz"))
    assert img.GetSize() == (24, 24, 16) and np.allclose(img.GetSpacing(), (12, 12, 15))
    assert np.allclose(img.GetDirection(), direction_from_code("RAS").flatten())
    assert img.GetOrigin() == lab.GetOrigin()
    assert set(np.unique(sitk.GetArrayFromImage(lab))) <= {0, 1, 2, 3}
    assert (folder / "imagesTs" / "tiny_002_0000.nii.gz").is_file()
    assert read_annotated_classes(folder)["tiny_000"] == ["iliopsoas_left", "liver", "postcava"]
    assert not list(folder.rglob(".tmp-*"))
    with pytest.raises(ValueError, match="does not draw"):
        make_phantom_dataset(8, "Bad", ["colon"], raw_root=tmp_path, progress=False)
