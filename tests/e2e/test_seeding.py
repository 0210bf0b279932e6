"""Seeded runs are bit-reproducible on the CPU (main-process loader, nnUNet_n_proc_DA=0): the same
seed gives identical weights for pre-training, fine-tuning and a demo-sized run; another seed gives
other weights. Unit: one training run; each comparison is between two complete runs."""
from __future__ import annotations

import argparse
import json
import re

import pytest
import torch

from suprem_nnunet import paths
from suprem_nnunet.cli.common import seed_int
from suprem_nnunet.seeding import check_seed, rank_seed, seed_everything, worker_seeds
from suprem_nnunet.networks.checkpoint import load_training_checkpoint as load_checkpoint
TINY = dict(shape=(32, 32, 32), spacing=(10.0, 10.0, 10.0), progress=False)
CLASSES = ("liver", "spleen", "kidney_left", "kidney_right")


def _weights(fold_dir):
    return load_checkpoint(fold_dir / "checkpoint_final.pth")["network_weights"]


def _same(a, b) -> int:
    """Number of tensors that are bit-identical."""
    assert a.keys() == b.keys()
    return sum(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One tiny pre-training dataset, planned once; pre-trained three times (seeds 0, 0, 1)."""
    import os

    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess, plans_name_for
    from suprem_nnunet.synth.dataset import make_phantom_dataset
    from suprem_nnunet.training.base import SupremPretrainer, TrainingBudget
    from suprem_nnunet.training.run import build_trainer, train

    root = tmp_path_factory.mktemp("seeding")
    old = {v: os.environ.get(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    paths.setup_environment(str(root))
    torch.set_num_threads(1)
    pre = make_phantom_dataset(41, "SeedPre", CLASSES, 3, 0, seed=0, **TINY)
    tgt = make_phantom_dataset(42, "SeedTgt", ("liver", "kidney_left", "iliopsoas_left"), 3, 1, seed=5, **TINY)
    plan_and_preprocess(pre.name, "nnunet", ("3d_fullres",), PlanningCaps((16, 16, 16), 4, 16, 2),
                        num_processes=1, verify=False)
    budget = TrainingBudget(2, 3, 1, 3e-3, 2, "adamw")
    runs = {}
    for tag, seed in (("a", 0), ("b", 0), ("c", 1)):
        os.environ["nnUNet_results"] = str(root / f"results_{tag}")
        trainer = build_trainer(SupremPretrainer, pre.name, plans_name_for("nnunet"), "3d_fullres", "all",
                                torch.device("cpu"))
        runs[tag] = train(trainer, budget, resume=False, seed=seed, role="pretrain")
    yield {"root": root, "runs": runs, "target": tgt.name, "budget": budget}
    for v, x in old.items():
        if x is None:
            os.environ.pop(v, None)
        else:
            os.environ[v] = x


@pytest.mark.slow
def test_same_seed_same_pretraining_weights_other_seed_other_weights(pretrained):
    a, b, c = (_weights(pretrained["runs"][t]) for t in "abc")
    assert _same(a, b) == len(a)  # every tensor bit-identical
    assert _same(a, c) < len(a) // 2  # seed 1: most tensors differ
    info = json.loads((pretrained["runs"]["a"] / "run_info.json").read_text())
    assert info["seed"] == 0 and info["deterministic"] is False and info["versions"]["nnunetv2"]


@pytest.mark.slow
def test_same_seed_same_finetuned_weights(pretrained):
    import os

    from suprem_nnunet.training.finetune import finetune

    ckpt = str(pretrained["runs"]["a"] / "checkpoint_final.pth")
    out = {}
    for tag, seed in (("a", 3), ("b", 3), ("c", 4)):
        os.environ["nnUNet_results"] = str(pretrained["root"] / f"ft_{tag}")
        out[tag] = finetune(pretrained["target"], ckpt, num_train_cases=2, seed=seed, budget=pretrained["budget"],
                            device=torch.device("cpu"), num_processes=1, resume=False, verify=False)
    a, b, c = (_weights(out[t]) for t in "abc")
    assert _same(a, b) == len(a)
    assert _same(a, c) < len(a) // 2
    assert json.loads((out["c"] / "run_info.json").read_text())["seed"] == 4


@pytest.mark.slow
def test_demo_twice_with_one_seed_prints_one_table(tmp_path, monkeypatch):
    """Demo-sized run (the quick configuration: every stage, tiny budget), twice with seed 0."""
    from suprem_nnunet.demo import DemoConfig, run_demo

    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(tmp_path / "overridden_by_the_demo"))
    tables = []
    for run in ("one", "two"):
        text = run_demo(DemoConfig.quick(tmp_path / run)).read_text()
        tables.append([ln for ln in text.splitlines() if re.match(r"\| (\*\*mean|[a-z_]+ )", ln)
                       and "seconds" not in ln and not re.match(r"\| (make|plan|pre-train|train|predict)", ln)])
        assert "Seed 0" in text and "iterations" in text
    assert len(tables[0]) >= 10 and tables[0] == tables[1]
    folds = [sorted((tmp_path / r / "data" / "nnUNet_results").glob("Dataset902_*/SupremFinetuneTrainer__*/fold_all"))
             for r in ("one", "two")]
    assert len(folds[0]) == 1 and len(folds[1]) == 1
    a, b = _weights(folds[0][0]), _weights(folds[1][0])
    assert _same(a, b) == len(a)


def test_seed_values_and_streams():
    assert check_seed("7") == 7 and check_seed(0) == 0
    for bad in ("x", "-1", str(2**32), "1.5", True):
        with pytest.raises(ValueError, match="--seed must be an integer"):
            check_seed(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer"):
        seed_int("abc")
    w = worker_seeds(0, 0, 4)
    assert len(set(w)) == 4 and w == worker_seeds(0, 0, 4) and w != worker_seeds(0, 1, 4)
    assert worker_seeds(0, 0, 4, stream=1) != w and worker_seeds(None, 0, 4) is None
    assert rank_seed(0, 0) != rank_seed(0, 1)
    seed_everything(3)
    x = torch.rand(3)
    seed_everything(3)
    assert torch.equal(x, torch.rand(3))


def test_seed_flag_rejects_non_integers_in_one_line():
    from suprem_nnunet.cli.train import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["1", "--seed", "abc"])
    assert build_parser().parse_args(["1", "--seed", "5", "--deterministic"]).seed == 5
