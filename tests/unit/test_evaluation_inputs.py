"""Input naming for prediction (nnU-Net channel files vs one file per case) and test-time mirroring."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from suprem_nnunet.dataset.raw import write_image
from suprem_nnunet.inference import predict as predict_mod
from suprem_nnunet.inference.predict import mirroring
from suprem_nnunet.dataset.cases import case_name, group_channel_files, list_inputs
from suprem_nnunet.models.trained import TrainedModel
def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")
    return folder


def test_case_name_keeps_four_digit_suffixes():
    assert case_name("labelsTs/btcv_0001.nii.gz") == "btcv_0001"
    assert case_name("FLARE22_Tr_0001.nii") == "FLARE22_Tr_0001"


def test_files_ending_in_digits_are_one_case_each(tmp_path):
    """btcv_0001 and btcv_0002 are two cases, not two channels of 'btcv'."""
    d = _touch(tmp_path / "in", "btcv_0001.nii.gz", "btcv_0002.nii.gz", "amos_0005.nii.gz")
    assert sorted(list_inputs(d, 1)) == ["amos_0005", "btcv_0001", "btcv_0002"]


def test_nnunet_channel_naming(tmp_path):
    d = _touch(tmp_path / "one", "a_0000.nii.gz", "b_0000.nii.gz")
    assert list_inputs(d, 1) == {"a": [str(d / "a_0000.nii.gz")], "b": [str(d / "b_0000.nii.gz")]}
    two = _touch(tmp_path / "two", "a_0001.nii.gz", "a_0000.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz")
    assert list_inputs(two, 2)["a"] == [str(two / "a_0000.nii.gz"), str(two / "a_0001.nii.gz")]
    assert list_inputs(tmp_path / "one" / "a_0000.nii.gz", 1) == {"a": [str(d / "a_0000.nii.gz")]}


def test_multichannel_errors_name_the_file(tmp_path):
    d = _touch(tmp_path / "x", "a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz")
    with pytest.raises(ValueError, match=r"b_0000\.nii\.gz: case 'b' has channel\(s\) 0000, the model takes 2"):
        list_inputs(d, 2)
    with pytest.raises(ValueError, match=r"ct\.nii\.gz: the model takes 2 channels"):
        group_channel_files([tmp_path / "a_0000.nii.gz", tmp_path / "a_0001.nii.gz", tmp_path / "ct.nii.gz"], 2)
    with pytest.raises(ValueError, match=r"a\.nii.*a\.nii\.gz"):
        group_channel_files([tmp_path / "a.nii.gz", tmp_path / "a.nii"], 1)


def test_mirroring_passes_stored_axes_unchanged():
    assert mirroring(True, "cpu", None) == (False, None)  # trained without mirroring: off
    assert mirroring(True, "cpu", ()) == (False, None)
    assert mirroring(None, "cuda", (0, 1)) == (True, (0, 1))
    assert mirroring(None, "cpu", (0, 1, 2)) == (False, (0, 1, 2))


@pytest.fixture
def fake_predictor(monkeypatch):
    """nnU-Net's predictor replaced by one that records its settings and copies inputs to outputs."""
    calls = {}

    class FakePredictor:
        def __init__(self, **kw):
            calls["init"] = kw
            self.network, self.bf16 = torch.nn.Identity(), False

        def manual_initialization(self, net, pm, cm, params, dataset_json, trainer, axes):
            calls["axes"] = axes

        def predict_case(self, files, probabilities=False):
            from suprem_nnunet.inference.fast_predictor import CasePrediction

            img = sitk.ReadImage(str(files[0]))
            return CasePrediction(sitk.GetArrayFromImage(img).astype(np.uint8), {"image": img})

        def write_segmentation(self, seg, output_file, props):
            out = sitk.GetImageFromArray(seg)
            out.CopyInformation(props["image"])
            sitk.WriteImage(out, output_file)

    class FakePlans:
        def __init__(self, plans):
            pass

        def get_configuration(self, name):
            return None

    monkeypatch.setattr(predict_mod, "SupremPredictor", FakePredictor)
    monkeypatch.setattr(predict_mod, "PlansManager", FakePlans)
    monkeypatch.setattr(predict_mod, "build_network", lambda m: torch.nn.Identity())
    return calls


def _model(tmp_path, axes):
    dj = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}
    return TrainedModel(tmp_path / "model.pth", {}, {}, dj, "3d_fullres", "SupremTrainer", axes)


def _images(folder, *names):
    for n in names:
        folder.mkdir(parents=True, exist_ok=True)
        write_image(folder / n, np.zeros((4, 5, 6), np.int16), (1, 1, 1), (0, 0, 0), np.eye(3))
    return folder


def test_predict_keeps_mirroring_off_for_a_model_trained_without_it(tmp_path, fake_predictor):
    """No axes recorded means no mirroring (`mirror_axes or (0, 1, 2)` would mirror a model trained
    without it)."""
    inp = _images(tmp_path / "in", "x_0000.nii.gz")
    predict_mod.predict(inp, tmp_path / "out", _model(tmp_path, None), mirror=True)
    assert fake_predictor["init"]["use_mirroring"] is False and fake_predictor["axes"] is None
    predict_mod.predict(inp, tmp_path / "out", _model(tmp_path, (0, 2)), mirror=True)
    assert fake_predictor["init"]["use_mirroring"] is True and fake_predictor["axes"] == (0, 2)


def test_predict_names_outputs_by_case(tmp_path, fake_predictor):
    """'X_0000' inputs give 'X' (matching labelsTs/X); 'btcv_0001', 'btcv_0002' give two cases."""
    written = predict_mod.predict(_images(tmp_path / "a", "X_0000.nii.gz"), tmp_path / "pa", _model(tmp_path, None))
    assert [p.name for p in written] == ["X.nii.gz"]
    inp = _images(tmp_path / "b", "btcv_0001.nii.gz", "btcv_0002.nii.gz")
    written = predict_mod.predict(inp, tmp_path / "pb", _model(tmp_path, None), per_class=True)
    assert [p.name for p in written] == ["btcv_0001.nii.gz", "btcv_0002.nii.gz"]
    assert (tmp_path / "pb" / "btcv_0002" / "liver.nii.gz").is_file()
