"""Export / import of our own trained models, and fine-tuning weights from an imported model."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from suprem_nnunet.networks.unet3d import SuPreMUNet3D
from suprem_nnunet.zoo.archive import export_model, import_model, read_model_card
from suprem_nnunet.networks.checkpoint import load_checkpoint
from suprem_nnunet.zoo.release import resolve_pretrained
from suprem_nnunet.zoo.store import ZooError, model_folder

CLASS = "suprem_nnunet.networks.unet3d.SuPreMUNet3D"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPREM_ZOO", str(tmp_path / "zoo"))
    return tmp_path / "zoo"


def trained_model_folder(root):
    """A results folder as nnU-Net writes it, with numpy scalars in the checkpoint as its logger leaves."""
    folder = root / "Dataset901_Toy" / "SuPreMTrainer__nnUNetPlans_unet__3d_fullres"
    (folder / "fold_all" / "validation").mkdir(parents=True)
    arch = {"network_class_name": CLASS, "arch_kwargs": {"base_features": 4, "batch_stats_always": True},
            "_kw_requires_import": []}
    plans = {"dataset_name": "Dataset901_Toy", "plans_name": "nnUNetPlans_unet",
             "suprem": {"backbone": "unet", "preset": "suprem"},
             "configurations": {"3d_fullres": {"spacing": [1.5, 1.5, 1.5], "patch_size": [32, 32, 32],
                                               "normalization_schemes": ["CTNormalization"],
                                               "architecture": arch}}}
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
               "numTraining": 4, "file_ending": ".nii.gz"}
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    (folder / "fold_all" / "validation" / "summary.json").write_text(json.dumps(
        {"foreground_mean": {"Dice": 0.8}, "mean": {"1": {"Dice": 0.9}, "2": {"Dice": 0.7}}}))
    net = SuPreMUNet3D(1, 3, base_features=4)
    ckpt = {"network_weights": net.state_dict(), "optimizer_state": {"state": {}, "param_groups": []},
            "logging": {"ema_fg_dice": [np.float64(0.5)]}, "_best_ema": np.float64(0.8),
            "current_epoch": 3, "trainer_name": "SuPreMTrainer",
            "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": "all", "dataset_json": dataset},
            "inference_allowed_mirroring_axes": (0, 1, 2)}
    torch.save(ckpt, folder / "fold_all" / "checkpoint_final.pth")
    return folder, net


def test_export_import_roundtrip_and_pretrained_from_model(store, tmp_path):
    folder, net = trained_model_folder(tmp_path / "results")
    zip_path = export_model(folder, tmp_path / "toy.zip")
    with zipfile.ZipFile(zip_path) as z:
        assert set(z.namelist()) == {"model_card.json", "classes.json", "plans.json", "dataset.json",
                                     "fold_all/checkpoint_final.pth"}
        card = json.loads(z.read("model_card.json"))
    assert card["backbone"] == "unet" and card["classes"] == ["background", "liver", "spleen"]
    assert card["data"]["num_training_cases"] == 4 and card["metrics"]["validation_dice_foreground_mean"] == 0.8
    assert card["preprocessing"]["spacing"] == [1.5, 1.5, 1.5] and card["epochs"] == 3

    rec = import_model(zip_path, "toy")
    dest = model_folder("toy")
    assert dest.name == folder.name and rec["backbone"] == "unet"
    slim = load_checkpoint(dest / "fold_all" / "checkpoint_final.pth")  # weights_only, no numpy needed
    assert set(slim) == {"network_weights", "trainer_name", "init_args", "inference_allowed_mirroring_axes",
                         "current_epoch"}
    assert slim["init_args"]["configuration"] == "3d_fullres" and slim["trainer_name"] == "SuPreMTrainer"
    assert (dest / "plans.json").is_file() and (dest / "dataset.json").is_file()
    assert read_model_card("toy")["classes"][1] == "liver"

    pw = resolve_pretrained("toy")
    assert pw.backbone == "unet" and pw.class_names == ["background", "liver", "spleen"]
    assert pw.arch_kwargs == {"base_features": 4, "batch_stats_always": True} and pw.layout == "ours"
    assert all(torch.equal(pw.state_dict[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ZooError, match="already in the zoo"):
        import_model(zip_path, "toy")


def test_import_refuses_foreign_or_unsafe_archives(store, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ZooError, match="not an exported suprem-nnunet model"):
        import_model(bad, "bad")
    folder, _ = trained_model_folder(tmp_path / "results")
    good = export_model(folder, tmp_path / "good.zip")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for n in src.namelist():
            dst.writestr(n, src.read(n))
        dst.writestr("../escape.txt", "x")
    with pytest.raises(ZooError, match="unsafe path"):
        import_model(evil, "evil")
    with pytest.raises(ZooError, match="not an nnU-Net model folder"):
        export_model(folder.parent, tmp_path / "x.zip")


def test_cli_export_then_import(store, tmp_path, monkeypatch, capsys):
    from suprem_nnunet.cli.zoo import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPREM_HOME", str(tmp_path / "home"))
    folder, _ = trained_model_folder(tmp_path / "results")
    assert main(["export", str(folder), "-o", str(tmp_path / "m.zip")]) == 0
    assert main(["import", str(tmp_path / "m.zip"), "--name", "mine"]) == 0
    assert "imported model mine" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "mine" in capsys.readouterr().out
    assert main(["info", "mine", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_card"]["backbone"] == "unet"
