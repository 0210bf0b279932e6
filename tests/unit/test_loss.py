import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from suprem_nnunet.training.loss import PartialLabelDiceCELoss


def _data(seed=0, b=2, c=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, 8, 8, 8, generator=g)
    target = torch.randint(0, c, (b, 1, 8, 8, 8), generator=g)
    return logits, target


def test_full_labels_equal_nnunet_dice_ce():
    logits, target = _data()
    for batch_dice in (False, True):
        ref = DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                             weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss)
        ours = PartialLabelDiceCELoss(batch_dice=batch_dice)
        assert torch.allclose(ours(logits, target), ref(logits, target), atol=1e-5)
        ours.set_annotated(torch.ones(2, 4, dtype=torch.bool))
        assert torch.allclose(ours(logits, target), ref(logits, target), atol=1e-5)


def test_unannotated_class_is_not_penalised_as_background():
    """Where a case does not annotate class 2, predicting 2 on its 'background' costs nothing extra."""
    target = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    target[..., :2, :, :] = 1
    confident = torch.full((1, 3, 4, 4, 4), -10.0)
    confident[:, 1][target[:, 0] == 1] = 10.0
    as_bg, as_2 = confident.clone(), confident.clone()
    as_bg[:, 0][target[:, 0] == 0] = 10.0
    as_2[:, 2][target[:, 0] == 0] = 10.0  # predicts the unannotated class there
    loss = PartialLabelDiceCELoss()
    full = loss(as_2, target)
    loss.set_annotated(torch.tensor([[True, True, False]]))
    partial_2, partial_bg = loss(as_2, target), loss(as_bg, target)
    assert full > partial_2 + 1.0  # fully labelled: class 2 there is wrong
    assert torch.allclose(partial_2, partial_bg, atol=1e-4)  # partially labelled: both fine


def test_gradients_flow_only_where_defined():
    logits, target = _data(1, b=2, c=3)
    target[target == 2] = 0  # case labels never contain the unannotated class
    logits.requires_grad_(True)
    loss = PartialLabelDiceCELoss()
    loss.set_annotated(torch.tensor([[True, True, False], [True, True, True]]))
    loss(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
