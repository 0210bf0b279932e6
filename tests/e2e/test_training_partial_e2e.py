"""Partial labels end to end: two phantom sources annotating different classes are merged,
planned, preprocessed and pre-trained; the trainer's loss mask must be the annotated_classes.json
of the batch's cases. Also the trainer's checks of that file, the per-case online Dice and the
AdamW defaults, on the same tiny dataset."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

A = ["liver", "spleen", "kidney_left"]  # source A draws only these (others -> background)
B = ["liver", "spleen", "kidney_left", "aorta", "kidney_right"]  # source B draws all five
MERGED = "Dataset043_PartialMix"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from dataset_conversion.merge import merge
    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess, plans_name_for
    from suprem_nnunet.synth.dataset import make_phantom_dataset
    from suprem_nnunet.training.base import SupremPretrainer, TrainingBudget
    from suprem_nnunet.training.run import build_trainer, train

    root = tmp_path_factory.mktemp("partial")
    old = {v: os.environ.get(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for v in old:
        (root / v).mkdir()
        os.environ[v] = str(root / v)
    common = dict(shape=(32, 32, 32), spacing=(10, 10, 10), progress=False)
    make_phantom_dataset(41, "SrcA", A, 3, 0, seed=1, **common)
    make_phantom_dataset(42, "SrcB", B, 3, 0, seed=2, **common)
    merge([41, 42], 43, "PartialMix", progress=False)
    plan_and_preprocess(MERGED, "nnunet", ("3d_fullres",), PlanningCaps((32, 32, 32), 8, 32, 2), num_processes=1,
                        verify=False)
    trainer = build_trainer(SupremPretrainer, MERGED, plans_name_for("nnunet"))
    seen = []
    train_step = trainer.train_step

    def spy(batch):  # the mask the loss holds for this real batch, with the batch's case keys
        out = train_step(batch)
        seen.append(([str(k) for k in batch["keys"]], trainer.partial_loss.annotated.clone()))
        return out

    trainer.train_step = spy
    folder = train(trainer, TrainingBudget(epochs=1, iterations_per_epoch=2, val_iterations=1, optimizer="adamw"))
    yield {"root": root, "trainer": trainer, "seen": seen, "folder": Path(folder)}
    for v, val in old.items():
        if val is None:
            os.environ.pop(v, None)
        else:
            os.environ[v] = val


@pytest.fixture
def files(run):
    """The raw and preprocessed annotated_classes.json; restored after the test."""
    raw = run["root"] / "nnUNet_raw" / MERGED / "annotated_classes.json"
    pre = run["root"] / "nnUNet_preprocessed" / MERGED / "annotated_classes.json"
    saved = {p: p.read_bytes() for p in (raw, pre)}
    yield raw, pre
    for p, data in saved.items():
        p.write_bytes(data)


def test_loss_mask_equals_annotated_classes_of_the_batch(run):
    trainer = run["trainer"]
    file = run["root"] / "nnUNet_preprocessed" / MERGED / "annotated_classes.json"
    annotated = json.loads(file.read_text())
    names = trainer.class_names
    assert sorted(names) == sorted(B) and set(annotated) == {f"srca_{i:03d}" for i in range(3)} | {
        f"srcb_{i:03d}" for i in range(3)}
    loss = trainer.loss.loss if hasattr(trainer.loss, "loss") else trainer.loss
    assert loss is trainer.partial_loss  # the mask is the one the training loss uses
    assert len(run["seen"]) == 2
    for keys, mask in run["seen"]:
        for key, row in zip(keys, mask.tolist()):
            assert row[0] is True  # background
            assert {n for n, m in zip(names, row[1:]) if m} == set(annotated[key]), key
    assert all(np.isfinite(trainer.logger.local_logger.my_fantastic_logging["train_losses"]))


def test_log_states_how_many_cases_are_partial(run):
    log = next(run["folder"].glob("training_log_*.txt")).read_text()
    assert re.search(r"annotated classes: 6 training/validation cases listed in \S+annotated_classes\.json, "
                     r"3 partially labelled", log)


def test_preprocessing_copies_annotated_classes(run):
    raw = run["root"] / "nnUNet_raw" / MERGED / "annotated_classes.json"
    pre = run["root"] / "nnUNet_preprocessed" / MERGED / "annotated_classes.json"
    assert pre.read_bytes() == raw.read_bytes()
    assert json.loads(pre.read_text())["srca_000"] == sorted(A)


def test_raw_file_without_preprocessed_copy_stops(run, files):
    raw, pre = files
    pre.unlink()
    with pytest.raises(FileNotFoundError, match=r"annotated_classes\.json: missing.*rerun suprem_plan_and_preprocess"):
        run["trainer"].load_annotated_classes()


def test_case_missing_from_the_file_stops(run, files):
    raw, pre = files
    data = json.loads(pre.read_text())
    del data["srcb_001"]
    pre.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"{re.escape(str(pre))}: no entry for case srcb_001"):
        run["trainer"].load_annotated_classes()


def test_class_the_dataset_lacks_stops(run, files):
    raw, pre = files
    data = json.loads(pre.read_text())
    data["srca_002"].append("pancreas")
    pre.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"{re.escape(str(pre))}: case srca_002: class 'pancreas' is not a label"):
        run["trainer"].load_annotated_classes()


def test_no_file_anywhere_means_fully_labelled(run, files):
    raw, pre = files
    raw.unlink()
    pre.unlink()
    trainer = run["trainer"]
    trainer.load_annotated_classes()
    assert trainer.annotated_channels == {} and trainer._annotated_mask(["srca_000"]) is None
    assert Path(trainer.log_file).read_text().count("every case is treated as fully labelled") == 1


def test_online_dice_ignores_correct_predictions_of_unannotated_classes(run):
    """srca_000 does not annotate aorta: the network predicting aorta where its label map says
    background must not count as a false positive (nnU-Net's step would)."""
    trainer = run["trainer"]
    trainer.load_annotated_classes()
    names = trainer.class_names
    aorta, liver = names.index("aorta") + 1, names.index("liver") + 1
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., :4, :, :] = liver
    truth = target.clone().long()
    truth[..., 6:, :2, :2] = aorta  # really there, but source A never draws aorta
    logits = torch.nn.functional.one_hot(truth[:, 0], len(names) + 1).permute(0, 4, 1, 2, 3).float() * 10

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return [logits] if trainer.enable_deep_supervision else logits

    net, trainer.network = trainer.network, Fixed()
    batch = {"data": torch.zeros(1, 1, 8, 8, 8), "keys": ["srca_000"],
             "target": [target] if trainer.enable_deep_supervision else target}
    try:
        with torch.no_grad():
            out = trainer.validation_step(batch)
    finally:
        trainer.network = net
    assert out["fp_hard"][aorta - 1] == 0 and out["tp_hard"][aorta - 1] == 0
    assert out["tp_hard"][liver - 1] == 4 * 64 and out["fp_hard"][liver - 1] == 0 == out["fn_hard"][liver - 1]
    assert np.isfinite(out["loss"])


def test_adamw_gets_its_own_defaults_and_run_info_records_them(run):
    info = json.loads((run["folder"] / "run_info.json").read_text())
    assert info["optimizer"] == "adamw" and info["initial_lr"] == 1e-4 and info["weight_decay"] == 1e-5
    assert info["lr_schedule"] == "warmup_cosine" and info["warmup_epochs"] == 0  # one epoch: no warm-up
    group = run["trainer"].optimizer.param_groups[0]
    assert isinstance(run["trainer"].optimizer, torch.optim.AdamW) and group["weight_decay"] == 1e-5
    assert run["trainer"].logger.local_logger.my_fantastic_logging["lrs"][0] == pytest.approx(1e-4)


def test_adamw_explicit_lr_and_warmup_are_kept(run):
    from suprem_nnunet.planning.planner import plans_name_for
    from suprem_nnunet.training.base import SupremPretrainer, TrainingBudget
    from suprem_nnunet.training.run import build_trainer

    t = build_trainer(SupremPretrainer, MERGED, plans_name_for("nnunet"))
    t.apply_budget(TrainingBudget(epochs=40, initial_lr=3e-3, optimizer="adamw"))  # the demo's explicit lr
    assert (t.initial_lr, t.weight_decay, t.warmup_epochs, t.lr_schedule) == (3e-3, 1e-5, 1, "warmup_cosine")
    t.apply_budget(TrainingBudget(warmup_epochs=5))
    assert t.warmup_epochs == 5 and t.initial_lr == 3e-3
    sgd = build_trainer(SupremPretrainer, MERGED, plans_name_for("nnunet"))
    sgd.apply_budget(TrainingBudget(epochs=40))
    assert (sgd.optimizer_name, sgd.initial_lr, sgd.weight_decay, sgd.lr_schedule) == ("sgd", 1e-2, 3e-5, "poly")
    with pytest.raises(ValueError, match="applies to --optimizer adamw"):
        sgd.apply_budget(TrainingBudget(warmup_epochs=3))


def test_sample_by_class_weights_the_trainers_own_loader(run):
    """--sample-by class goes into the loader nnU-Net's get_dataloaders builds: source A's cases
    annotate 3 of the 5 classes, B's all 5 -> P(A case) = 3/30, P(B case) = 3/30 + 2/15."""
    trainer = run["trainer"]
    trainer.load_annotated_classes()
    trainer.configure_partial_labels("marginal", "class")
    try:
        tr, val = trainer.get_dataloaders()
    finally:
        trainer.configure_partial_labels()
    loader = getattr(tr, "data_loader", None) or tr.generator
    p = dict(zip(map(str, loader.indices), loader.sampling_probabilities))
    expect = {**{f"srca_{i:03d}": 0.1 for i in range(3)}, **{f"srcb_{i:03d}": 0.7 / 3 for i in range(3)}}
    assert p == pytest.approx(expect)
    np.random.seed(0)
    drawn = np.concatenate([loader.get_indices() for _ in range(1000)])
    assert np.mean([str(k).startswith("srcb") for k in drawn]) == pytest.approx(0.7, abs=0.03)
    val_loader = getattr(val, "data_loader", None) or val.generator
    assert val_loader.sampling_probabilities is None  # validation draws uniformly
    assert "sampling by class: expected share of draws per class: aorta 70.0%" in Path(trainer.log_file).read_text()


def test_naive_loss_hands_the_loss_no_mask(run):
    trainer = run["trainer"]
    trainer.load_annotated_classes()
    assert trainer._loss_mask(["srca_000"]).tolist() == trainer._annotated_mask(["srca_000"]).tolist()
    trainer.configure_partial_labels("naive")
    try:
        assert trainer._loss_mask(["srca_000"]) is None  # every class taken as annotated: plain Dice + CE
    finally:
        trainer.configure_partial_labels()
    with pytest.raises(ValueError, match="unknown --partial-loss 'ignore'"):
        trainer.configure_partial_labels("ignore")
    info = json.loads((run["folder"] / "run_info.json").read_text())
    assert (info["partial_loss"], info["sample_by"]) == ("marginal", "case")
