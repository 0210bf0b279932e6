"""oneDNN convolutions for CPU prediction with one window at a time.

PyTorch picks a CPU convolution backend per call (`aten/src/ATen/native/Convolution.cpp`,
`ConvParams::use_mkldnn`). For a float32 input of batch 1 with 3x3x3 kernels it uses oneDNN only when
N*C*D*H > 20480 ("for some case, native is faster"); below that it runs `slow_conv3d`
(im2col + GEMM). nnU-Net predicts one window at a time (batch 1), so every convolution of a U-Net
with few channels or small deep stages takes the slow path. 8->64 features at 64^3 measured here
(1 thread): convolutions 365 ms -> 184 ms per window, the whole network 459 -> 354 ms.
1x1x1 convolutions (segmentation heads) keep PyTorch's dispatch: for 8 -> 33 channels at 64^3 its
GEMM took 25 ms with one thread, oneDNN 68 ms (it reorders the 33-channel output), and a hand-written
matrix product was as fast in isolation but slower inside the network (real CT: 15.3-17.1 s vs
13.2-13.5 s of CPU time per case, 3 alternating runs each).

`use_onednn_convolutions` changes the class of each plain `nn.Conv3d`/`nn.Conv2d` of a network to a
subclass whose forward calls `aten::mkldnn_convolution` directly on CPU float32 inputs: the same
operation (same weights, padding, stride, dilation, groups) on oneDNN's kernels, equal to the
default path within float32 rounding (largest difference 2.4e-7 on the benchmark network's
logits). Other dtypes, CPU autocast (`--bf16`: autocast must see the convolution), devices, padding modes and `padding="same"` take
PyTorch's own path. Parameters, buffers and state-dict keys are untouched. Transposed convolutions
keep PyTorch's path (`aten::mkldnn_convolution` has no transposed form).
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn

log = logging.getLogger(__name__)


def _onednn_forward(conv: nn.modules.conv._ConvNd, x: torch.Tensor, weight: torch.Tensor,
                    bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """oneDNN convolution of `x`, or None where PyTorch's own dispatch must decide."""
    if (x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
            or torch.is_autocast_enabled("cpu") or conv.padding_mode != "zeros" or isinstance(conv.padding, str) or x.dim() != weight.dim()):
        return None
    if all(k == 1 for k in weight.shape[2:]):  # 1x1 (segmentation heads): PyTorch's GEMM is faster here
        return None
    return torch.ops.aten.mkldnn_convolution(x.contiguous(), weight.contiguous(), bias, conv.padding, conv.stride,
                                             conv.dilation, conv.groups)


class OneDnnConv3d(nn.Conv3d):
    """`nn.Conv3d` that runs oneDNN on CPU float32 (see module doc)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        out = _onednn_forward(self, input, weight, bias)
        return super()._conv_forward(input, weight, bias) if out is None else out


class OneDnnConv2d(nn.Conv2d):
    """`nn.Conv2d` that runs oneDNN on CPU float32 (see module doc)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        out = _onednn_forward(self, input, weight, bias)
        return super()._conv_forward(input, weight, bias) if out is None else out


_SWAP = {nn.Conv3d: OneDnnConv3d, nn.Conv2d: OneDnnConv2d}


def onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.aten, "mkldnn_convolution")


def _swap_classes(network: nn.Module, classes: dict) -> int:
    """Give every module whose exact class is a key of `classes` the mapped class, in place; returns how many."""
    n = 0
    for module in network.modules():
        new = classes.get(type(module))
        if new is not None:
            module.__class__ = new
            n += 1
    return n


def use_onednn_convolutions(network: nn.Module) -> int:
    """Switch every plain Conv3d/Conv2d of `network` (exact class, not subclasses) to oneDNN in place;
    returns how many were switched (0 where this torch build has no oneDNN)."""
    if not onednn_available():
        log.info("oneDNN is not available in this torch build: convolutions keep PyTorch's dispatch")
        return 0
    return _swap_classes(network, _SWAP)


def use_default_convolutions(network: nn.Module) -> int:
    """Undo `use_onednn_convolutions`; returns how many modules were switched back."""
    return _swap_classes(network, {v: k for k, v in _SWAP.items()})
