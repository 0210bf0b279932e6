"""Synthetic state dicts built from the release layout files load 100 % into our networks."""
from __future__ import annotations

import pytest
import torch

from suprem_nnunet.networks import get_backbone, network_class
from suprem_nnunet.networks.universal import UniversalModel
from suprem_nnunet.zoo.convert import detect_layout, load_matching, to_adapter_keys
from suprem_nnunet.zoo.layouts import read_layout, synthetic_state_dict

from helpers.paths import DATA

LAYOUTS = DATA / "checkpoint_layouts"


def _adapter(name: str, num_classes: int):
    return network_class(name)(input_channels=1, num_classes=num_classes,
                               **get_backbone(name).default_arch_kwargs)


@pytest.mark.parametrize("file,backbone", [("suprem_unet_2100.json", "unet"),
                                           ("suprem_swinunetr_2100.json", "swinunetr")])
def test_universal_release_layout_loads_completely(file, backbone):
    layout = read_layout(LAYOUTS / file)
    sd = synthetic_state_dict(LAYOUTS / file)
    assert detect_layout(sd) == "universal"

    # 1. backbone only -> our adapter: every backbone tensor loads, only the plain head is missing
    body, head = to_adapter_keys(sd, "universal")
    assert len(body) == layout["n_backbone_tensors"]
    adapter = _adapter(backbone, 32)
    rep = load_matching(adapter, body, file)
    assert len(rep.loaded) == layout["n_backbone_tensors"] and not rep.unexpected and not rep.mismatched
    assert all(k.startswith(adapter.head_keys) for k in rep.missing)
    assert rep.fraction_loaded(prefixes=[k for k in map(str, body)]) == 1.0
    key = next(k for k in body if k.endswith("weight") and body[k].dim() > 1)
    assert torch.equal(adapter.state_dict()[key], body[key])

    # 2. the whole release -> Universal model: all tensors, same names and order as the release
    model = UniversalModel(_adapter(backbone, 1), num_classes=32)
    names = [k[len("module."):] for k in sd]
    assert list(model.state_dict()) == names
    rep = load_matching(model, {k[len("module."):]: v for k, v in sd.items()}, file, require_prefixes=("",))
    assert len(rep.loaded) == layout["n_tensors"] and not rep.missing and not rep.unexpected
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == layout["n_params"]
    assert sum(p.numel() for k, p in model.named_parameters() if k.startswith("backbone.")) \
        == layout["n_backbone_params"]


@pytest.mark.parametrize("file,n_classes", [("suprem_segresnet_2100.json", 32),
                                            ("suprem_segresnet_2100_n25.json", 25)])
def test_segresnet_release_layout_loads_completely(file, n_classes):
    layout = read_layout(LAYOUTS / file)
    sd = synthetic_state_dict(LAYOUTS / file)
    assert detect_layout(sd) == "segresnet"
    body, _ = to_adapter_keys(sd, "segresnet")
    net = _adapter("segresnet", int(body["conv_final.2.conv.weight"].shape[0]))
    assert net.conv_final[2].conv.out_channels == n_classes
    rep = load_matching(net, body, file, require_prefixes=("",))
    assert len(rep.loaded) == layout["n_tensors"] and not rep.missing and not rep.unexpected
    assert list(net.state_dict()) == list(body)
    assert sum(p.numel() for p in net.parameters()) == layout["n_params"]
