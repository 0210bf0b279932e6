"""A released-layout checkpoint: suprem_zoo import -> suprem_finetune --pretrained NAME -> suprem_predict NAME."""
import json

import pytest
import torch

from helpers.cli import run_cli

pytestmark = pytest.mark.slow


def test_release_finetunes_and_predicts_by_zoo_name(tmp_path):
    from suprem_nnunet.zoo.layouts import release_like_checkpoint

    env = {"nnUNet_raw": tmp_path / "raw", "nnUNet_preprocessed": tmp_path / "pre",
           "nnUNet_results": tmp_path / "res", "SUPREM_ZOO": tmp_path / "zoo", "nnUNet_n_proc_DA": "0"}
    ckpt = tmp_path / "supervised_suprem_unet_2100.pth"
    torch.save(release_like_checkpoint("unet"), ckpt)
    run_cli("zoo", "import", ckpt, "--name", "supervised_suprem_unet_2100", env=env)
    run_cli("synth", "-d", 31, "-n", "Zt", "--classes", "liver,spleen,iliopsoas_left", "--num-train", 2,
            "--num-test", 1, "--size", 24, "--spacing", 3, env=env)
    ft = run_cli("finetune", "31", "--pretrained", "supervised_suprem_unet_2100", "--max-patch", 16, "--device",
                 "cpu", "--epochs", 1, "--iterations-per-epoch", 2, "--val-iterations", 1, "--no-verify", env=env)
    out = tmp_path / "res" / "Dataset031_Zt" / "SupremFinetuneTrainer__suprem_unet_preset-suprem__3d_fullres"
    plans = json.loads((tmp_path / "pre" / "Dataset031_Zt" / "suprem_unet_preset-suprem.json").read_text())
    assert plans["suprem"]["preset"] == "suprem_unet" and plans["configurations"]["3d_fullres"]["spacing"] == [1.5] * 3
    props = plans["foreground_intensity_properties_per_channel"]["0"]
    assert (props["percentile_00_5"], props["percentile_99_5"]) == (-175.0, 250.0)
    assert (250.0 - props["mean"]) / props["std"] == 1.0 and (-175.0 - props["mean"]) / props["std"] == 0.0
    assert "'body_copied': 104" in ft.stdout  # every U-Net backbone tensor of the release
    assert (out / "fold_all" / "checkpoint_final.pth").is_file()
    pred = run_cli("predict", "-i", tmp_path / "raw" / "Dataset031_Zt" / "imagesTs", "-o", tmp_path / "p",
                   "-m", "supervised_suprem_unet_2100", "--device", "cpu", env=env)
    assert (tmp_path / "p" / "zt_002.nii.gz").is_file() and json.loads((tmp_path / "p" / "zt_002.json").read_text())
    missing = run_cli("finetune", "31", "--pretrained", "supervised_suprem_swinunetr_2100", env=env, check=False)
    assert missing.returncode == 1 and "suprem_zoo import" in missing.stderr
