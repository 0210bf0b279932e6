"""oneDNN convolutions for batch-1 CPU windows (inference/onednn.py): same logits, the fast kernel taken.

Proves: (1) PyTorch's own dispatch sends the small-channel stages of a batch-1 3D U-Net to
`slow_conv3d` and the switched network runs only `mkldnn_convolution`; (2) logits equal the
default path within 1e-5 (float32 rounding); (3) state-dict keys, bfloat16 autocast and 2D
convolutions are unaffected, and the switch can be undone; (4) prediction turns it on only on
our data path (`make_predictor(fast_data_path=False)` keeps nnU-Net's dispatch).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from suprem_nnunet.inference.onednn import (OneDnnConv2d, OneDnnConv3d, onednn_available, use_default_convolutions,
                                            use_onednn_convolutions)

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


def small_unet() -> nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    torch.manual_seed(0)
    return PlainConvUNet(1, 4, [8, 16, 32, 64], nn.Conv3d, 3, [1, 2, 2, 2], 2, 5, 2, False, nn.InstanceNorm3d,
                         {"eps": 1e-5, "affine": True}, None, None, nn.LeakyReLU, {"inplace": True}).eval()


def conv_ops(net: nn.Module, x: torch.Tensor) -> dict:
    """{aten op: calls} of the network's (non-transposed) convolutions."""
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        net(x)
    return {e.key: e.count for e in prof.key_averages() if "conv" in e.key and "transpose" not in e.key}


@pytest.mark.slow
def test_switched_network_takes_onednn_and_gives_the_same_logits():
    net = small_unet()
    x = torch.randn(1, 1, 32, 32, 32)
    keys = list(net.state_dict())
    with torch.inference_mode():
        want = net(x)
    pointwise = sum(isinstance(m, nn.Conv3d) and m.kernel_size == (1, 1, 1) for m in net.modules())
    assert conv_ops(net, x)["aten::slow_conv3d_forward"] > pointwise  # PyTorch's pick for batch 1, few channels

    n = use_onednn_convolutions(net)
    assert n == sum(isinstance(m, nn.Conv3d) for m in net.modules()) and n > 10
    assert all(type(m) is OneDnnConv3d for m in net.modules() if isinstance(m, nn.Conv3d))
    ops = conv_ops(net, x)  # every 3x3x3 convolution on oneDNN; 1x1x1 heads keep PyTorch's GEMM
    assert ops["aten::mkldnn_convolution"] == n - pointwise and 1 <= ops.get("aten::slow_conv3d_forward", 0) <= pointwise
    with torch.inference_mode():
        got = net(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=0), float((got - want).abs().max())
    assert list(net.state_dict()) == keys

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 keeps PyTorch's dispatch
        assert net(x).dtype == torch.bfloat16
    assert use_default_convolutions(net) == n
    assert not any(type(m) is OneDnnConv3d for m in net.modules())


def test_conv2d_and_same_padding():
    conv = nn.Conv2d(4, 4, 3, padding="same").eval()
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), conv)
    x = torch.randn(1, 3, 20, 20)
    with torch.inference_mode():
        want = seq(x)
        assert use_onednn_convolutions(seq) == 2 and type(seq[0]) is OneDnnConv2d
        assert torch.allclose(seq(x), want, atol=1e-5, rtol=0)  # padding="same" falls back to PyTorch's own path


def test_predictor_switches_only_on_our_data_path():
    from suprem_nnunet.benchmarks.predict import benchmark_model
    from suprem_nnunet.inference.predict import make_predictor

    model = benchmark_model(patch=32, unet_features=4)
    ours = make_predictor(model, torch.device("cpu"), mirror=False)
    theirs = make_predictor(model, torch.device("cpu"), mirror=False, fast_data_path=False)
    assert any(type(m) is OneDnnConv3d for m in ours.network.modules())
    assert not any(type(m) is OneDnnConv3d for m in theirs.network.modules())


def test_pointwise_convolution_keeps_pytorch_dispatch():
    conv = nn.Conv3d(8, 33, 1).eval()
    x = torch.randn(1, 8, 6, 7, 5)
    with torch.inference_mode():
        want = conv(x)
        use_onednn_convolutions(conv)
        got = conv(x)
    assert torch.equal(got, want)
    assert "aten::mkldnn_convolution" not in conv_ops(conv, x)
