"""Each backbone plans, pre-trains, fine-tunes (head remapped) and predicts through the same code path."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from suprem_nnunet.networks.registry import get_backbone
from suprem_nnunet.synth.dataset import make_phantom_dataset

pytestmark = pytest.mark.slow

PRE = ["liver", "spleen", "kidney_left", "kidney_right", "aorta"]
TGT = ["liver", "aorta", "iliopsoas_left", "iliopsoas_right"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("bb")
    old = {v: os.environ.get(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for v in old:
        (root / v).mkdir()
        os.environ[v] = str(root / v)
    make_phantom_dataset(21, "BbPre", PRE, 2, 0, shape=(40, 40, 40), spacing=(8, 8, 8), seed=1, progress=False)
    make_phantom_dataset(22, "BbTgt", TGT, 2, 1, shape=(36, 40, 34), spacing=(9, 8, 10), orientation="RAS",
                         seed=2, progress=False)
    yield root
    for v, val in old.items():
        if val is None:
            os.environ.pop(v, None)
        else:
            os.environ[v] = val


@pytest.mark.parametrize("backbone", ["unet", "segresnet", "swinunetr"])
def test_backbone_plans_trains_finetunes_predicts(data, backbone, tmp_path):
    from suprem_nnunet.inference.predict import predict
    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess, plans_name_for
    from suprem_nnunet.training.base import SupremPretrainer, TrainingBudget
    from suprem_nnunet.training.finetune import finetune
    from suprem_nnunet.training.run import build_trainer, train

    b = get_backbone(backbone)
    plans = plan_and_preprocess("Dataset021_BbPre", backbone, ("3d_fullres",), PlanningCaps(max_patch=(32, 32, 32)),
                                num_processes=1, verify=False, arch_kwargs=b.test_arch_kwargs)
    assert list(plans["configurations"]) == ["3d_fullres"]
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["architecture"]["network_class_name"] == b.network_class_name
    assert all(p % b.divisible_by == 0 and p >= (b.min_patch_side or 1) for p in cfg["patch_size"])
    assert plans["suprem"]["backbone"] == backbone and cfg["estimated_training_memory_gb"] > 0

    budget = TrainingBudget(epochs=1, iterations_per_epoch=2, val_iterations=1)
    trainer = build_trainer(SupremPretrainer, "Dataset021_BbPre", plans_name_for(backbone))
    assert trainer.enable_deep_supervision is False
    pre_dir = train(trainer, budget)

    ft_dir = finetune("Dataset022_BbTgt", str(pre_dir), num_train_cases=2, budget=budget, verify=False)
    rows = {r["target_name"]: r for r in json.loads((ft_dir / "head_mapping.json").read_text())}
    assert rows["liver"]["source_channel"] == PRE.index("liver") + 1 and rows["iliopsoas_left"]["status"] == "novel"

    img = next((data / "nnUNet_raw" / "Dataset022_BbTgt" / "imagesTs").glob("*.nii.gz"))
    out = predict(img, tmp_path, ft_dir.parent, device="cpu")
    pred, ref = sitk.ReadImage(str(out[0])), sitk.ReadImage(str(img))
    assert pred.GetSize() == ref.GetSize() and np.allclose(pred.GetDirection(), ref.GetDirection())
    assert set(np.unique(sitk.GetArrayFromImage(pred))) <= set(range(len(TGT) + 1))


def test_plans_differ_per_backbone_as_constraints_require(data):
    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess

    patches = {}
    for backbone in ("nnunet", "unet", "swinunetr"):
        b = get_backbone(backbone)
        kw = b.test_arch_kwargs if b.fixed_topology else None
        plans = plan_and_preprocess("Dataset021_BbPre", backbone, (), PlanningCaps(), num_processes=1,
                                    verify=False, arch_kwargs=kw)
        patches[backbone] = plans["configurations"]["3d_fullres"]["patch_size"]
    assert all(p % 32 == 0 and p >= 64 for p in patches["swinunetr"])  # Swin: multiples of 32, at least 64
    assert all(p % 8 == 0 for p in patches["unet"])
    assert patches["swinunetr"] != patches["nnunet"]
