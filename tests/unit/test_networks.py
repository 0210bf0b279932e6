"""Backbone adapters: paper parameter counts, the adapter contract, the two release traps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from suprem_nnunet.networks import BACKBONES, backbone_for_class, get_backbone, network_class
from suprem_nnunet.networks.segresnet import SuPreMSegResNet
from suprem_nnunet.networks.swinunetr import (MONAI_MERGE_OFFSETS, RELEASE_MERGE_OFFSETS, ReleasePatchMerging,
                                              SuPreMSwinUNETR, merge_neighbours)
from suprem_nnunet.networks.unet3d import SuPreMUNet3D

NEW = ("unet", "segresnet", "swinunetr")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def n_params(model: nn.Module, exclude=()) -> int:
    return sum(p.numel() for k, p in model.named_parameters() if not k.startswith(tuple(exclude)))


# --- registry ---------------------------------------------------------------------------------

def test_registry_entries_are_data_and_resolve():
    assert {"nnunet", "resenc", *NEW} <= set(BACKBONES)
    for name in NEW:
        b = get_backbone(name)
        cls = network_class(name)
        assert b.head_keys == cls.head_keys and b.encoder_keys == cls.encoder_keys
        assert b.divisible_by == cls.divisible_by and not b.deep_supervision
        assert backbone_for_class(b.network_class_name) is b
    assert get_backbone("swinunetr").divisible_by == 32


# --- parameter counts (paper: 32 classes) ------------------------------------------------------

@pytest.mark.parametrize("name,backbone_params,total_params,paper", [
    ("unet", 19_073_600, 19_075_680, "19.08M"),
    ("segresnet", 4_700_880, 4_701_424, "4.70M"),
    ("swinunetr", 62_186_610, 62_188_178, "62.19M"),
])
def test_parameter_counts_match_paper(name, backbone_params, total_params, paper):
    cls = network_class(name)
    model = cls(input_channels=1, num_classes=32, **get_backbone(name).default_arch_kwargs)
    assert n_params(model, cls.head_keys) == backbone_params
    assert n_params(model) == total_params
    # the paper's figures count the network with its 32-class output layer
    assert f"{n_params(model) / 1e6:.2f}M" == paper == get_backbone(name).paper_params


# --- adapter contract on tiny widths -----------------------------------------------------------

@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "swinunetr" else n for n in NEW])
def test_tiny_adapter_trains_and_returns_plain_logits(name):
    torch.manual_seed(0)
    b = get_backbone(name)
    net = network_class(name)(input_channels=1, num_classes=3, deep_supervision=False, **b.test_arch_kwargs)
    side = b.min_patch_side or 32  # Swin: 64
    batch = 1 if side > 32 else 2
    x = torch.randn(batch, 1, side, side, side)
    y = torch.randint(0, 3, (batch, side, side, side))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        out = net(x)
        assert isinstance(out, torch.Tensor) and out.shape == (batch, 3, side, side, side)
        loss = nn.functional.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    head = [k for k, _ in net.state_dict().items() if k.startswith(b.head_keys)]
    assert head and all(net.state_dict()[k].shape[0] == 3 for k in head)
    assert any(k.startswith(b.encoder_keys) for k in net.state_dict())


@pytest.mark.parametrize("name", NEW)
def test_nnunet_builds_adapter_from_plans_and_deep_supervision_is_refused(name):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    b = get_backbone(name)
    net = get_network_from_plans(b.network_class_name, dict(b.test_arch_kwargs), [], 1, 4,
                                 deep_supervision=False)
    assert type(net).__name__ == b.network_class_name.rsplit(".", 1)[1]
    with pytest.raises(ValueError, match="deep.supervision"):
        get_network_from_plans(b.network_class_name, dict(b.test_arch_kwargs), [], 1, 4, deep_supervision=True)


def test_swin_rejects_patch_not_divisible_by_32():
    net = SuPreMSwinUNETR(1, 2, feature_size=12, depths=(1, 1, 1, 1), window_size=4)
    with pytest.raises(ValueError, match=r"\[48\].*multiples of 32"):
        net(torch.zeros(1, 1, 64, 48, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        SuPreMSwinUNETR.training_memory_bytes((96, 96, 80))
    with pytest.raises(ValueError, match="minimum 64"):
        SuPreMSwinUNETR.check_patch_size((32, 64, 64))


def test_memory_model_is_measured_and_scales():
    for name in NEW:
        cls = network_class(name)
        kw = get_backbone(name).test_arch_kwargs
        side = get_backbone(name).min_patch_side or 32
        small = cls.training_memory_bytes((side,) * 3, 1, **kw)
        big = cls.training_memory_bytes((2 * side,) * 3, 2, **kw)
        assert 0 < small < big
        assert cls.activation_bytes_per_voxel(**kw) > 0
    # wider network, more memory per voxel
    assert (SuPreMUNet3D.activation_bytes_per_voxel(base_features=8)
            > 1.5 * SuPreMUNet3D.activation_bytes_per_voxel(base_features=4))


# --- trap 1: batch norm of the U-Net release ---------------------------------------------------

def _perturb_running_stats(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.add_(3.0)
            m.running_var.mul_(7.0)


def test_unet_batch_stats_always_ignores_running_statistics_in_eval():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 32, 32)
    net = SuPreMUNet3D(1, 2, base_features=4, batch_stats_always=True).eval()
    with torch.no_grad():
        before = net(x)
        _perturb_running_stats(net)
        after = net(x)
        train_mode = net.train()(x)
    assert torch.equal(before, after)
    assert torch.allclose(before, train_mode, atol=1e-6)  # eval == batch statistics

    plain = SuPreMUNet3D(1, 2, base_features=4, batch_stats_always=False).eval()
    with torch.no_grad():
        before = plain(x)
        _perturb_running_stats(plain)
        assert not torch.allclose(before, plain(x))


# --- trap 2: patch-merging neighbour order ------------------------------------------------------

def _cube_2x2x2() -> torch.Tensor:
    """Channels-last (1, 2, 2, 2, 1) tensor whose value at (d, h, w) is 100 d + 10 h + w."""
    x = torch.zeros(1, 2, 2, 2, 1)
    for d in range(2):
        for h in range(2):
            for w in range(2):
                x[0, d, h, w, 0] = 100 * d + 10 * h + w
    return x


def test_patch_merging_order_element_by_element():
    x = _cube_2x2x2()
    release = merge_neighbours(x, RELEASE_MERGE_OFFSETS).flatten().tolist()
    # MONAI 0.9 / SuPreM: offsets (0,1,0) and (0,0,1) twice, (1,1,0) and (0,1,1) never
    assert release == [0, 100, 10, 1, 101, 10, 1, 111]
    assert 110 not in release and 11 not in release

    from monai.networks.nets.swin_unetr import PatchMerging

    monai_merge = PatchMerging(dim=1)
    monai_merge.norm, monai_merge.reduction = nn.Identity(), nn.Identity()
    monai_order = monai_merge(x).flatten().tolist()
    assert monai_order == [0, 100, 10, 1, 110, 101, 11, 111]
    assert monai_order == merge_neighbours(x, MONAI_MERGE_OFFSETS).flatten().tolist()

    ours = ReleasePatchMerging(dim=1)
    ours.norm, ours.reduction = nn.Identity(), nn.Identity()
    assert ours(x).flatten().tolist() == release


def test_swin_monai_option_equals_monai_and_release_option_differs():
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(0)
    small = dict(feature_size=12, depths=(1, 1, 1, 1), window_size=4)  # fast on CPU
    ref = SwinUNETR(in_channels=1, out_channels=2, **small).eval()
    ours = SuPreMSwinUNETR(1, 2, patch_merging="monai", **small).eval()
    release = SuPreMSwinUNETR(1, 2, patch_merging="v0.9", **small).eval()
    ours.load_state_dict(ref.state_dict())
    release.load_state_dict(ref.state_dict())  # same keys: the order is not visible in names
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
        assert not torch.allclose(release(x), ref(x), atol=1e-4)


def test_segresnet_matches_monai_with_same_weights():
    from monai.networks.nets import SegResNet

    ref = SegResNet(spatial_dims=3, init_filters=8, in_channels=1, out_channels=3,
                    blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1)).eval()
    ours = SuPreMSegResNet(1, 3, init_filters=8).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
    with pytest.raises(ValueError, match="multiple of num_groups"):
        SuPreMSegResNet(1, 3, init_filters=4)
