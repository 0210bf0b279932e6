import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from suprem_nnunet.training.head_remap import format_mapping, map_head, transfer_weights

HEAD = ("decoder.seg_layers.",)


def _net(num_classes, seed):
    torch.manual_seed(seed)
    return PlainConvUNet(1, 3, (4, 8, 16), torch.nn.Conv3d, 3, (1, 2, 2), (2, 2, 2), num_classes, (2, 2),
                         conv_bias=True, norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"affine": True},
                         nonlin=torch.nn.LeakyReLU, deep_supervision=True)


SOURCE = ["spleen", "kidney_right", "liver", "inferior_vena_cava", "aorta"]
TARGET = ["liver", "iliopsoas_left", "postcava", "spleen"]


def test_mapping_by_name_and_synonym():
    rows = map_head(SOURCE, TARGET)
    assert [(r.target_channel, r.source_channel, r.status) for r in rows] == [
        (0, 0, "background"), (1, 3, "shared"), (2, None, "novel"), (3, 4, "shared"), (4, 1, "shared")]
    table = format_mapping(rows)
    assert "iliopsoas_left" in table and "novel" in table and "inferior_vena_cava" in table


def test_shared_channels_copied_exactly_novel_not():
    src, tgt = _net(len(SOURCE) + 1, 0), _net(len(TARGET) + 1, 1)
    fresh = {k: v.clone() for k, v in tgt.state_dict().items()}
    rows = map_head(SOURCE, TARGET)
    sd, stats = transfer_weights(src.state_dict(), tgt.state_dict(), HEAD, rows, len(SOURCE) + 1)
    tgt.load_state_dict(sd)
    s, t = src.state_dict(), tgt.state_dict()
    head = [k for k in t if k.startswith(HEAD)]
    assert len(head) == 4  # 2 deep-supervision outputs x (weight, bias)
    for k in head:
        for tc, sc in ((0, 0), (1, 3), (3, 4), (4, 1)):
            assert torch.equal(t[k][tc], s[k][sc]), (k, tc)
        assert torch.equal(t[k][2], fresh[k][2])  # novel channel keeps its fresh init
        assert not torch.equal(t[k][2], s[k][2])
    for k in t:
        if not k.startswith(HEAD):
            assert torch.equal(t[k], s[k]), k
    assert stats["head_channels_copied"] == 4 and stats["head_channels_fresh"] == 1
    # the remapped network predicts the shared classes as the source did
    x = torch.randn(1, 1, 16, 16, 16)
    src.eval(), tgt.eval()
    with torch.no_grad():
        ys, yt = src(x)[0], tgt(x)[0]
    assert torch.allclose(yt[:, 1], ys[:, 3], atol=1e-5) and torch.allclose(yt[:, 0], ys[:, 0], atol=1e-5)


def test_module_prefix_is_accepted():
    src, tgt = _net(6, 0), _net(5, 1)
    ddp = {f"module.{k}": v for k, v in src.state_dict().items()}
    sd, _ = transfer_weights(ddp, tgt.state_dict(), HEAD, map_head(SOURCE, TARGET), 6)
    assert torch.equal(sd["encoder.stages.0.0.convs.0.conv.weight"], src.state_dict()["encoder.stages.0.0.convs.0.conv.weight"])


def test_architecture_mismatch_is_refused():
    src = _net(6, 0)
    torch.manual_seed(0)
    other = PlainConvUNet(1, 3, (8, 16, 32), torch.nn.Conv3d, 3, (1, 2, 2), (2, 2, 2), 5, (2, 2), conv_bias=True,
                          norm_op=torch.nn.InstanceNorm3d, deep_supervision=True)
    with pytest.raises(ValueError, match="architectures differ"):
        transfer_weights(src.state_dict(), other.state_dict(), HEAD, map_head(SOURCE, TARGET), 6)
    with pytest.raises(ValueError, match="source channels"):
        transfer_weights(src.state_dict(), _net(5, 1).state_dict(), HEAD, map_head(SOURCE, TARGET), 4)
