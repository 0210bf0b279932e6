"""The partial-label loss as a marginal loss over an allowed set of classes per voxel."""
import torch

from suprem_nnunet.training.loss import PartialLabelDiceCELoss


def _case_with_unlisted_class():
    """One case over classes (bg, liver, tumour) whose list calls tumour unannotated, yet its label
    map draws some tumour voxels (FLARE23-style partial lesions)."""
    target = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    target[..., :2, :, :] = 1
    target[..., 3, 0, :2] = 2  # drawn tumour voxels
    logits = torch.zeros(1, 3, 4, 4, 4, requires_grad=True)
    annotated = torch.tensor([[True, True, False]])
    return logits, target, annotated


def test_class_drawn_but_listed_unannotated_gives_finite_loss_and_pulls_its_logit_up():
    logits, target, annotated = _case_with_unlisted_class()
    loss = PartialLabelDiceCELoss()
    loss.set_annotated(annotated)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    tumour = target[:, 0] == 2
    assert (logits.grad[:, 2][tumour] < 0).all()  # gradient descent raises the tumour logit there
    # the drawn voxel is supervised as exactly 'tumour': its CE term is -log p_tumour = log 3 here
    ce_only = PartialLabelDiceCELoss(weight_dice=0.0)
    ce_only.set_annotated(annotated)
    per_voxel = torch.full((4, 4, 4), 0.0)
    per_voxel[target[0, 0] == 1] = torch.log(torch.tensor(3.0))  # -log(1/3)
    per_voxel[target[0, 0] == 2] = torch.log(torch.tensor(3.0))
    per_voxel[target[0, 0] == 0] = -torch.log(torch.tensor(2 / 3))  # background set {bg, tumour}
    assert torch.allclose(ce_only(logits.detach(), target), per_voxel.mean(), atol=1e-6)


def test_background_voxel_target_is_background_or_unannotated_classes():
    """-log(p_bg + p_unannotated) on background, exactly, against a hand computation."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, 3, generator=g)
    target = torch.randint(0, 4, (2, 1, 3, 3, 3), generator=g)
    annotated = torch.tensor([[True, True, False, False], [True, False, True, True]])
    ce_only = PartialLabelDiceCELoss(weight_dice=0.0)
    ce_only.set_annotated(annotated)
    p = torch.softmax(logits, 1)
    terms = []
    for b in range(2):
        allowed_bg = [0] + [k for k in range(1, 4) if not annotated[b, k]]
        t = target[b, 0]
        bg = -torch.log(p[b, allowed_bg].sum(0))
        fg = -torch.log(p[b].gather(0, t[None])[0])
        terms.append(torch.where(t == 0, bg, fg))
    assert torch.allclose(ce_only(logits, target), torch.stack(terms).mean(), atol=1e-6)


def test_confident_wrong_logits_stay_finite():
    """Large logits (as after many steps or under fp16 range) never produce inf or NaN."""
    logits, target, annotated = _case_with_unlisted_class()
    big = (logits.detach() + 0.0)
    big[:, 0] = 1e4  # everything confidently background, including the drawn tumour voxels
    big.requires_grad_(True)
    loss = PartialLabelDiceCELoss()
    loss.set_annotated(annotated)
    value = loss(big, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(big.grad).all()


def test_organ_voxels_allow_the_undrawn_lesions_it_hosts():
    """A source that draws the liver but not its lesions labels lesion voxels as liver: with the
    (liver, liver_tumor) pair those voxels cost nothing for predicting liver_tumor (old loss: ~10)."""
    from suprem_nnunet.training.base import hosted_channel_pairs

    names = ["liver", "liver_tumor", "kidney_left", "kidney_right", "kidney_tumor"]
    pairs = hosted_channel_pairs(names)
    assert sorted(pairs) == [(1, 2), (3, 5), (4, 5)]
    logits = torch.zeros(1, 6, 4, 4, 4)
    logits[:, 2] = 10.0  # the net says liver_tumor everywhere
    target = torch.ones(1, 1, 4, 4, 4, dtype=torch.long)  # the label says liver everywhere
    ann = torch.tensor([[True, True, False, True, True, False]])  # liver_tumor, kidney_tumor undrawn
    with_pairs = PartialLabelDiceCELoss(hosted=pairs, weight_dice=0.0)
    without = PartialLabelDiceCELoss(weight_dice=0.0)
    for loss in (with_pairs, without):
        loss.set_annotated(ann)
    assert float(with_pairs(logits, target)) < 1e-3
    assert float(without(logits, target)) > 5.0
    ann_full = torch.ones(1, 6, dtype=torch.bool)  # liver_tumor annotated: liver voxels are liver only
    with_pairs.set_annotated(ann_full)
    assert float(with_pairs(logits, target)) > 5.0
