"""AdamW's warm-up + cosine schedule and defaults, the budget flags, and the annotated-classes copy."""
import json

import pytest

from suprem_nnunet.dataset.raw import copy_annotated_classes, write_annotated_classes, write_dataset_json
from suprem_nnunet.training.base import default_warmup_epochs
from suprem_nnunet.training.lr_schedule import warmup_cosine_lr


def test_warmup_then_cosine_per_epoch():
    lrs = [warmup_cosine_lr(1e-4, e, 10, 2) for e in range(10)]
    assert lrs[:3] == pytest.approx([1e-4 / 3, 2e-4 / 3, 1e-4])  # never zero, reaches lr after warm-up
    assert all(a > b > 0 for a, b in zip(lrs[2:], lrs[3:]))  # then strictly decreasing, positive
    assert lrs[6] == pytest.approx(0.5e-4)  # cosine half way through the 8 decay epochs
    assert [default_warmup_epochs(n) for n in (800, 1000, 16, 2, 1)] == [20, 25, 1, 1, 0]


def test_scheduler_drives_the_optimizer_like_nnunets_poly():
    import torch

    from suprem_nnunet.training.lr_schedule import WarmupCosineLRScheduler

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = WarmupCosineLRScheduler(opt, 1e-4, 10, 2)
    sched.step(4)  # nnU-Net steps with the current epoch
    assert opt.param_groups[0]["lr"] == pytest.approx(warmup_cosine_lr(1e-4, 4, 10, 2))


def test_budget_flags():
    from suprem_nnunet.cli.train import budget_from, build_parser

    args = build_parser().parse_args(["1", "--optimizer", "adamw", "--warmup-epochs", "3"])
    b = budget_from(args)
    assert (b.optimizer, b.initial_lr, b.warmup_epochs) == ("adamw", None, 3)  # lr unset: adamw's own default


def test_copy_annotated_classes_validates_and_replaces_stale_copies(tmp_path):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    raw.mkdir()
    write_dataset_json(raw, ["liver", "spleen"], 2)
    write_annotated_classes(raw, {"a": ["liver"], "b": ["liver", "spleen"]})
    dst = copy_annotated_classes(raw, pre)
    assert dst == pre / "annotated_classes.json" and json.loads(dst.read_text()) == {"a": ["liver"],
                                                                                    "b": ["liver", "spleen"]}
    (raw / "annotated_classes.json").write_text(json.dumps({"a": ["liver", "aorta"]}))
    with pytest.raises(ValueError, match=r"annotated_classes\.json: case a: class 'aorta' is not a label"):
        copy_annotated_classes(raw, pre)
    (raw / "annotated_classes.json").unlink()
    assert copy_annotated_classes(raw, pre) is None and not dst.exists()  # no stale copy left behind
