"""End to end through the command-line tools on tiny phantoms (subprocesses, like a user)."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from suprem_nnunet.models.trained import read_trained_model
from suprem_nnunet.networks.checkpoint import load_training_checkpoint as load_checkpoint

from helpers.cli import run_cli

pytestmark = pytest.mark.slow

TINY = ["--size", "32", "--spacing", "10"]
BUDGET = ["--device", "cpu", "--epochs", "1", "--iterations-per-epoch", "2", "--val-iterations", "1"]
PRE_CLASSES = "liver,spleen,kidney_left,kidney_right,aorta,vertebrae"


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = {"nnUNet_raw": root / "raw", "nnUNet_preprocessed": root / "pre", "nnUNet_results": root / "results",
           "nnUNet_n_proc_DA": "0", "nnUNet_compile": "f"}
    out = {"root": root, "env": env}
    run_cli("synth", "-d", 11, "-n", "Pre", "--classes", PRE_CLASSES, "--num-train", 3, "--num-test", 0, *TINY,
            env=env)
    run_cli("synth", "-d", 12, "-n", "Tgt", "--classes", "liver,kidney_left,iliopsoas_left,iliopsoas_right",
            "--num-train", 3, "--num-test", 2, "--size", "30,32,20", "--spacing", "10,10,13", "--orientation",
            "RAS", "--seed", 3, env=env)
    out["plan"] = run_cli("plan_and_preprocess", "-d", 11, "--max-patch", 16, "--base-features", 4,
                          "--max-features", 16, env=env).stdout
    out["train"] = run_cli("train", "Pre", "3d_fullres", *BUDGET, env=env)
    out["resume"] = run_cli("train", "11", *BUDGET[:2], "--epochs", "2", "--iterations-per-epoch", "2",
                            "--val-iterations", "1", "-v", env=env)
    out["ft"] = run_cli("finetune", "Tgt", "--pretrained", "--num-train-cases", 2, "--freeze-encoder-epochs", 1,
                        *BUDGET, env=env)
    out["scratch"] = run_cli("finetune", "12", "--from-scratch", "--num-train-cases", 2, *BUDGET, env=env)
    out["ft_dir"] = root / "results" / "Dataset012_Tgt" / "SupremFinetuneTrainer__suprem_nnunet_from_Dataset011_Pre__3d_fullres"
    out["pred"] = root / "pred"
    run_cli("predict", "-i", root / "raw" / "Dataset012_Tgt" / "imagesTs", "-o", out["pred"], "-m", out["ft_dir"],
            "--device", "cpu", "--per-class", env=env)
    out["eval"] = run_cli("evaluate", out["pred"], root / "raw" / "Dataset012_Tgt" / "labelsTs", "--tolerance", 3,
                          env=env).stdout
    return out


def test_plans_respect_caps(e2e):
    plan = json.loads(e2e["plan"].strip().splitlines()[-1])
    assert max(plan["patch_size"]) <= 16 and max(plan["features_per_stage"]) <= 16
    plans = json.loads((e2e["root"] / "pre" / "Dataset011_Pre" / "suprem_nnunet.json").read_text())
    assert plans["suprem"]["backbone"] == "nnunet" and plans["suprem"]["caps"]["max_features"] == 16


def test_checkpoint_carries_what_finetuning_needs(e2e):
    ckpt_dir = e2e["root"] / "results" / "Dataset011_Pre" / "SupremPretrainer__suprem_nnunet__3d_fullres" / "fold_all"
    m = read_trained_model(ckpt_dir)
    assert m.class_names == PRE_CLASSES.split(",")
    assert m.plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    assert "foreground_intensity_properties_per_channel" in m.plans and m.backbone == "nnunet"
    assert (ckpt_dir / "progress.png").stat().st_size > 1000  # training curve
    assert load_checkpoint(ckpt_dir / "checkpoint_final.pth")["current_epoch"] == 2  # resumed to 2 epochs


def test_resume_continues_from_checkpoint(e2e):
    assert "resuming from" in e2e["resume"].stderr and "at epoch 1 of 2" in e2e["resume"].stderr


def test_head_mapping_saved_and_right(e2e):
    rows = json.loads((e2e["ft_dir"] / "fold_all" / "head_mapping.json").read_text())
    status = {r["target_name"]: (r["source_channel"], r["status"]) for r in rows}
    pre = PRE_CLASSES.split(",")
    assert status["background"] == (0, "background")
    assert status["liver"] == (pre.index("liver") + 1, "shared")
    assert status["kidney_left"] == (pre.index("kidney_left") + 1, "shared")
    assert status["iliopsoas_left"] == (None, "novel") and status["iliopsoas_right"] == (None, "novel")
    assert "novel" in e2e["ft"].stdout  # the table is printed


def test_both_arms_share_plans_and_few_shot_subset(e2e):
    base = e2e["root"] / "results" / "Dataset012_Tgt"
    ft = json.loads((e2e["ft_dir"] / "fold_all" / "run_info.json").read_text())
    sc = json.loads((base / "SupremScratchTrainer__suprem_nnunet_from_Dataset011_Pre__3d_fullres" / "fold_all"
                     / "run_info.json").read_text())
    assert ft["role"] == "finetune" and sc["role"] == "scratch"
    assert len(ft["train_cases"]) == 2 and ft["train_cases"] == sc["train_cases"]
    assert ft["plans"] == sc["plans"] == "suprem_nnunet_from_Dataset011_Pre"
    assert not (base / "SupremScratchTrainer__suprem_nnunet_from_Dataset011_Pre__3d_fullres" / "fold_all"
                / "head_mapping.json").exists()
    plans = json.loads((e2e["root"] / "pre" / "Dataset012_Tgt" / "suprem_nnunet_from_Dataset011_Pre.json").read_text())
    assert plans["suprem"]["pretrain"]["class_names"] == PRE_CLASSES.split(",")
    src = json.loads((e2e["root"] / "pre" / "Dataset011_Pre" / "suprem_nnunet.json").read_text())
    for key in ("spacing", "patch_size", "architecture", "normalization_schemes"):
        assert plans["configurations"]["3d_fullres"][key] == src["configurations"]["3d_fullres"][key]
    assert plans["foreground_intensity_properties_per_channel"] == src["foreground_intensity_properties_per_channel"]


def test_prediction_has_input_geometry(e2e):
    images = sorted((e2e["root"] / "raw" / "Dataset012_Tgt" / "imagesTs").glob("*.nii.gz"))
    assert len(images) == 2
    for img_file in images:
        case = img_file.name.replace("_0000.nii.gz", "")
        img, pred = sitk.ReadImage(str(img_file)), sitk.ReadImage(str(e2e["pred"] / f"{case}.nii.gz"))
        assert pred.GetSize() == img.GetSize() == (30, 32, 20)
        assert np.allclose(pred.GetSpacing(), img.GetSpacing())
        assert np.allclose(pred.GetOrigin(), img.GetOrigin())
        assert np.allclose(pred.GetDirection(), img.GetDirection())
        assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2, 3, 4}
        masks = sorted(p.name for p in (e2e["pred"] / case).glob("*.nii.gz"))
        assert masks == sorted(f"{c}.nii.gz" for c in ("liver", "kidney_left", "iliopsoas_left", "iliopsoas_right"))


def test_evaluation_outputs(e2e):
    rows = (e2e["pred"] / "metrics.csv").read_text().strip().splitlines()
    assert rows[0] == "case,class,dsc,nsd,gt_voxels,pred_voxels" and len(rows) == 1 + 2 * 4
    res = json.loads((e2e["pred"] / "metrics.json").read_text())
    assert set(res["summary"]) == {"liver", "kidney_left", "iliopsoas_left", "iliopsoas_right"}
    assert res["tolerance_mm"] == 3.0
    for s in res["summary"].values():
        assert 0 <= s["dsc"]["mean"] <= 1 and s["dsc"]["n"] == 2
    assert "mean over classes" in e2e["eval"]


def test_bad_inputs_give_one_clear_line(e2e, tmp_path):
    env, root = e2e["env"], e2e["root"]
    p = run_cli("predict", "-i", tmp_path / "nope.nii.gz", "-o", tmp_path / "o", "-m", e2e["ft_dir"], env=env,
                check=False)
    assert p.returncode == 1 and "nope.nii.gz" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not an image")
    p = run_cli("predict", "-i", bad, "-o", tmp_path / "o", "-m", e2e["ft_dir"], env=env, check=False)
    assert p.returncode == 1 and "broken.nii.gz" in p.stderr and "cannot be read" in p.stderr
    assert not list((tmp_path / "o").glob("*.nii.gz")) if (tmp_path / "o").exists() else True
    p = run_cli("evaluate", tmp_path, root / "raw" / "Dataset012_Tgt" / "labelsTs", "--dataset-json",
                root / "raw" / "Dataset012_Tgt" / "dataset.json", env=env, check=False)
    assert p.returncode == 1 and "no prediction for 2 case(s)" in p.stderr
    p = run_cli("train", "999", env=env, check=False)
    assert p.returncode == 1 and "no dataset matches '999'" in p.stderr
    # a target whose channel is not CT cannot take CT weights
    ds = root / "raw" / "Dataset012_Tgt"
    mr = root / "raw" / "Dataset013_Mr"
    import shutil
    shutil.copytree(ds, mr)
    dj = json.loads((mr / "dataset.json").read_text())
    dj["channel_names"] = {"0": "T1"}
    (mr / "dataset.json").write_text(json.dumps(dj))
    p = run_cli("finetune", "13", "--pretrained", *BUDGET, env=env, check=False)
    assert p.returncode == 1 and "modalities must match" in p.stderr and "'T1'" in p.stderr
