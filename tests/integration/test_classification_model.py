"""Encoder + head on every backbone, checkpoint errors, and train -> predict -> evaluate through the CLIs
on tiny phantoms with a tiny nnU-Net checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from suprem_nnunet.classification.encoder import ENCODER_FEATURES, load_encoder_weights
from suprem_nnunet.classification.model import EncoderSpec, build_network, load_classifier, make_classifier
from suprem_nnunet.classification.data import SUBTYPES
from suprem_nnunet.inference.openvino_export import openvino_version
from suprem_nnunet.networks.registry import BACKBONES

from helpers.tiny_plans import DATASET, tiny_plans


def test_every_backbone_has_an_encoder_extractor():
    assert set(ENCODER_FEATURES) == set(BACKBONES)


@pytest.mark.parametrize("backbone", ["unet"])  # segresnet: same path, but importing MONAI costs ~20 s here
def test_release_style_encoder_and_head(backbone, one_torch_thread):
    """A zoo release has no plans: the adapter is built from its arch kwargs; only encoder tensors load."""
    from suprem_nnunet.networks import network_class

    kw = BACKBONES[backbone].test_arch_kwargs
    release = network_class(backbone)(input_channels=1, num_classes=5, **kw)
    spec = EncoderSpec(backbone, "release.pth", arch_kwargs=kw)
    model = make_classifier(spec, SUBTYPES, (16, 16, 16), release.state_dict(), seed=0)
    enc_key = next(k for k in release.state_dict() if k.startswith(BACKBONES[backbone].encoder_keys))
    assert torch.equal(model.network.state_dict()[enc_key], release.state_dict()[enc_key])
    model.eval()
    assert model(torch.zeros(2, 1, 16, 16, 16)).shape == (2, 4)
    scratch = make_classifier(spec, SUBTYPES, (16, 16, 16), None, seed=0)
    assert not torch.equal(scratch.network.state_dict()[enc_key], release.state_dict()[enc_key])
    wide = network_class(backbone)(input_channels=1, num_classes=5, **{**kw, **(
        {"base_features": 8} if backbone == "unet" else {"init_filters": 16})})
    with pytest.raises(ValueError) as e:
        load_encoder_weights(build_network(spec), backbone, wide.state_dict(), "wide.pth")
    assert "\n" not in str(e.value) and str(e.value).startswith("wide.pth: its encoder does not fit")


def test_pooled_features_keep_their_level(one_torch_thread):
    """Pooling takes the deepest map before its block's last instance norm: after that norm every
    channel's patch mean is the norm's bias whatever the input; before it, it follows the input."""
    from suprem_nnunet.classification.encoder import encoder_features

    spec = EncoderSpec("nnunet", "x", PLANS, "3d_fullres", DATASET)
    torch.manual_seed(0)
    net = build_network(spec).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 16, 16, 16, generator=g)
    x[1, :, 4:12, 4:12, 4:12] += 1.0  # a bright block
    x[2, :, 6:10, 6:10, 6:10] -= 1.0  # a dark one
    with torch.no_grad():
        post = encoder_features("nnunet", net, x)
        pre = encoder_features("nnunet", net, x, pre_norm=True)
        block = net.encoder.stages[-1][0].convs[-1]
        assert torch.allclose(post, block.nonlin(block.norm(pre)), atol=1e-6)  # pre is that norm's input
        post_mean = post.mean((2, 3, 4))
        pre_mean = pre.mean((2, 3, 4))
    assert pre.shape == post.shape
    # post-norm (after LeakyReLU) channel means barely differ across inputs; pre-norm ones do
    assert float((pre_mean - pre_mean[0]).abs().max()) > 5 * float((post_mean - post_mean[0]).abs().max())
    model = make_classifier(spec, SUBTYPES, (16, 16, 16), None, seed=0).eval()
    with torch.no_grad():
        f = model.features(x)
    assert torch.allclose(f[:, :pre.shape[1]], pre_mean, atol=1e-5)


PLANS = tiny_plans("Dataset971_TinyPre", 10.0, (24, 24, 24), (16, 16, 16),
                   {"max": 777.0, "mean": 137.0, "median": 103.0, "min": -935.0, "percentile_00_5": -879.0,
                    "percentile_99_5": 729.0, "std": 190.0})


@pytest.mark.slow
def test_train_predict_evaluate_cli(nnunet_env, tmp_path, one_torch_thread, capsys, caplog):
    from suprem_nnunet.cli.classify import main as classify
    from suprem_nnunet.cli.evaluate import main as evaluate

    assert classify(["make-phantoms", "-d", "972", "-n", "Sub", "--num-train", "8", "--num-test", "4",
                     "--size", "24", "--spacing", "10", "--difficulty", "0.2"]) == 0
    raw = nnunet_env / "nnUNet_raw" / "Dataset972_Sub"
    spec = EncoderSpec("nnunet", "x", PLANS, "3d_fullres", DATASET)
    torch.manual_seed(3)
    net = build_network(spec)
    ckpt = tmp_path / "pre" / "checkpoint_final.pth"
    ckpt.parent.mkdir()
    torch.save({"network_weights": net.state_dict(), "current_epoch": 1, "trainer_name": "SupremPretrainer",
                "init_args": {"plans": PLANS, "configuration": "3d_fullres", "fold": "all", "dataset_json": DATASET}},
               ckpt)
    budget = ["--epochs", "2", "--iterations-per-epoch", "2", "--batch-size", "4", "--device", "cpu"]
    capsys.readouterr()
    assert classify(["train", "972", "--pretrained", str(ckpt), "-o", str(tmp_path / "pre_arm"), *budget]) == 0
    assert classify(["train", "972", "--pretrained", str(ckpt), "--from-scratch", "--num-train-cases", "4",
                     "--seed", "1", "-o", str(tmp_path / "scratch_arm"), *budget]) == 0
    info = json.loads((tmp_path / "scratch_arm" / "run_info.json").read_text())
    assert info["role"] == "scratch" and len(info["train_cases"]) == 4 and set(info["class_counts"].values()) == {1}
    model, _, _ = load_classifier(tmp_path / "pre_arm")
    k = "encoder.stages.0.0.convs.0.conv.weight"
    assert k in net.state_dict()
    model_s, _, _ = load_classifier(tmp_path / "scratch_arm")
    assert not torch.equal(model_s.network.state_dict()[k], net.state_dict()[k])
    for arm in ("pre_arm", "scratch_arm"):
        assert classify(["predict", "-i", str(raw / "imagesTs"), "-m", str(tmp_path / arm), "-o",
                         str(tmp_path / f"{arm}.csv"), "--roi-labels", str(raw / "labelsTs"), "--device", "cpu"]) == 0
    rows = (tmp_path / "pre_arm.csv").read_text().splitlines()
    assert rows[0] == "case,none,pdac,cyst,pannet,prediction" and len(rows) == 5
    p = np.array([[float(v) for v in r.split(",")[1:5]] for r in rows[1:]])
    assert np.allclose(p.sum(1), 1, atol=1e-4)
    if openvino_version() is not None:  # the same scores through OpenVINO (n = 4 test cases, 6 decimals)
        assert classify(["predict", "-i", str(raw / "imagesTs"), "-m", str(tmp_path / "pre_arm"), "-o",
                         str(tmp_path / "ov.csv"), "--roi-labels", str(raw / "labelsTs"), "--device", "cpu",
                         "--backend", "openvino", "--backend-cache", str(tmp_path / "ov"), "--threads", "1"]) == 0
        ov = (tmp_path / "ov.csv").read_text().splitlines()
        q = np.array([[float(v) for v in r.split(",")[1:5]] for r in ov[1:]])
        assert [r.split(",")[0] for r in ov] == [r.split(",")[0] for r in rows] and np.abs(q - p).max() <= 1e-4
    info = json.loads((tmp_path / "pre_arm" / "run_info.json").read_text())
    assert info["input"] == {"window_hu": [-200.0, 300.0], "fill": "roi_median", "mask_roi": True,
                             "roi_margin_mm": 0.0}
    # a test case whose ROI is empty is not scored (one warning line), the others are
    import shutil

    import SimpleITK as sitk

    roi = tmp_path / "roi"
    shutil.copytree(raw / "labelsTs", roi)
    first = sorted(roi.glob("*.nii.gz"))[0]
    img = sitk.ReadImage(str(first))
    blank = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(img)))
    blank.CopyInformation(img)
    sitk.WriteImage(blank, str(first))
    caplog.clear()
    assert classify(["predict", "-i", str(raw / "imagesTs"), "-m", str(tmp_path / "pre_arm"), "-o",
                     str(tmp_path / "empty.csv"), "--roi-labels", str(roi), "--device", "cpu"]) == 0
    case = first.name[: -len(".nii.gz")]
    got = (tmp_path / "empty.csv").read_text().splitlines()
    assert len(got) == 4 and not any(r.startswith(case + ",") for r in got)
    warned = [r.getMessage() for r in caplog.records if "empty ROI" in r.getMessage()]
    assert warned == [f"{case}: empty ROI ({first} has no pancreas or lesion voxel); not scored"]
    capsys.readouterr()
    assert classify(["predict", "-i", str(raw / "imagesTs"), "-m", str(tmp_path / "pre_arm"), "-o",
                     str(tmp_path / "x.csv"), "--device", "cpu"]) == 1  # a masked model needs its ROIs
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained on ROI-masked patches" in err and not (tmp_path / "x.csv").exists()
    assert evaluate(["--classification", str(tmp_path / "pre_arm.csv"), str(raw / "case_labels.csv"),
                     "--baseline-scores", str(tmp_path / "scratch_arm.csv"), "-o", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "roc.png").is_file()
    capsys.readouterr()
    # bad input: one line each
    (raw / "case_labels.csv").write_text((raw / "case_labels.csv").read_text() + "ghost,pdac\n")
    assert classify(["train", "972", "--pretrained", str(ckpt), *budget]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "case_labels.csv: 1 problem(s): case 'ghost' has no image" in err
    bad = torch.load(tmp_path / "pre_arm" / "classifier.pth", weights_only=True)
    bad["state_dict"]["head.1.weight"] = torch.zeros(4, 10)
    torch.save(bad, tmp_path / "bad.pth")
    assert classify(["predict", "-i", str(raw / "imagesTs"), "-m", str(tmp_path / "bad.pth"), "-o",
                     str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the encoder does not fit the head" in err
    assert classify(["predict", "-i", str(raw / "imagesTs"), "-m", str(ckpt), "-o", str(tmp_path / "x.csv")]) == 1
    assert "not a suprem classifier checkpoint" in capsys.readouterr().err
