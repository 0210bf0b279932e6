"""Zoo: catalog data, safe loading, store, converters, released-model loading and its class head."""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from suprem_nnunet.labels import ATLAS_CLASSES, is_known
from suprem_nnunet.networks import BACKBONES, get_backbone
from suprem_nnunet.networks.swinunetr import SuPreMSwinUNETR
from suprem_nnunet.networks.unet3d import SuPreMUNet3D
from suprem_nnunet.zoo import catalog, get_entry
from suprem_nnunet.networks.checkpoint import CheckpointError, load_checkpoint, load_state_dict_file
from suprem_nnunet.zoo.convert import detect_layout, load_matching
from suprem_nnunet.zoo.layouts import read_layout, release_like_checkpoint
from suprem_nnunet.planning.presets import load_preset
from suprem_nnunet.zoo.release import load_released, resolve_pretrained
from suprem_nnunet.zoo.store import ZooError, import_checkpoint, read_index, sha256_file

from helpers.paths import DATA

LAYOUTS = DATA / "checkpoint_layouts"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPREM_ZOO", str(tmp_path / "zoo"))
    return tmp_path / "zoo"


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


class NotATensor:  # a pickled object a weights_only load must refuse
    def __init__(self):
        self.payload = "x"


# --- catalog (pure data) -----------------------------------------------------------------------

def test_catalog_entries_are_consistent():
    names = set(catalog())
    assert {"supervised_suprem_unet_2100", "supervised_suprem_swinunetr_2100",
            "supervised_suprem_segresnet_2100"} <= names
    for e in catalog().values():
        assert e.backbone in BACKBONES and e.layout in {"universal", "segresnet", "models_genesis", "swin_ssl"}
        assert load_preset(e.preset)["backbone"] == e.backbone
        assert e.sha256 is None or len(e.sha256) == 64
        if e.kind == "release":
            assert e.url.startswith("https://huggingface.co/MrGiovanni/SuPreM/resolve/main/" + e.file)
            layout = read_layout(LAYOUTS / e.layout_file)
            assert layout["checkpoint_file"] == e.file
            assert e.params_backbone == layout.get("n_backbone_params", layout["n_params"] - 544)


def test_universal_template_maps_to_known_unified_names_in_template_order():
    classes = get_entry("supervised_suprem_unet_2100").classes
    assert len(classes) == 32 == len(set(classes))
    assert all(is_known(c) for c in classes)
    assert classes[0] == "spleen" and classes[24] == "celiac_trunk" and classes[31] == "kidney_cyst"
    assert classes[1:3] == ("kidney_right", "kidney_left")
    assert set(classes) == set(ATLAS_CLASSES) and classes != ATLAS_CLASSES  # same 32, other order
    assert get_entry("supervised_suprem_segresnet_2100").classes is None


# --- safe loading --------------------------------------------------------------------------------

def test_pickled_object_is_refused_with_one_line_naming_the_file(tmp_path):
    path = save({"net": {"w": torch.zeros(2)}, "extra": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "evil.pth" in msg and "refused" in msg and "\n" not in msg
    assert load_state_dict_file(save({"net": {"w": torch.zeros(2)}}, tmp_path / "ok.pth"))["w"].shape == (2,)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_load_that_loads_nothing_is_refused():
    net = SuPreMUNet3D(1, 2, base_features=4)
    with pytest.raises(CheckpointError, match="no tensor matches"):
        load_matching(net, {"foo.weight": torch.zeros(3)}, "x.pth")
    with pytest.raises(ValueError, match="unknown checkpoint layout"):
        detect_layout({"foo.weight": torch.zeros(3)})


# --- store ---------------------------------------------------------------------------------------

def test_import_records_sha256_and_refuses_duplicates_and_wrong_hash(store, tmp_path, monkeypatch):
    src = save(release_like_checkpoint("unet"), tmp_path / "supervised_suprem_unet_2100.pth")
    rec = import_checkpoint(src)  # name from the catalog
    assert rec["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest() == sha256_file(src)
    assert rec["layout"] == "universal" and rec["catalog"] == "supervised_suprem_unet_2100"
    assert (store / rec["file"]).is_file()
    assert "supervised_suprem_unet_2100" in read_index()["checkpoints"]
    with pytest.raises(ZooError, match="already in the zoo"):
        import_checkpoint(src)

    import dataclasses

    import suprem_nnunet.zoo.store as store_mod
    pinned = dataclasses.replace(get_entry("supervised_suprem_unet_2100"), sha256="0" * 64)
    monkeypatch.setattr(store_mod, "entry_for_file", lambda name: pinned)
    with pytest.raises(ZooError, match="differs from the catalog"):
        import_checkpoint(src, overwrite=True)


def test_unimported_name_explains_how_to_import(store):
    with pytest.raises(ZooError, match="suprem_zoo import supervised_suprem_unet_2100.pth"):
        load_released("supervised_suprem_unet_2100")


# --- direct inference: released U-Net -------------------------------------------------------------

def _reference_universal(ckpt):
    """Rebuild the model a release-like checkpoint was saved from (tiny U-Net universal model)."""
    from suprem_nnunet.networks.universal import UniversalModel

    model = UniversalModel(SuPreMUNet3D(1, 1, base_features=8), 32)
    model.load_state_dict({k[len("module."):]: v for k, v in ckpt["net"].items()})
    return model.eval()


def test_load_released_reproduces_logits_by_name(store, tmp_path):
    ckpt = release_like_checkpoint("unet", seed=3)
    src = save(ckpt, tmp_path / "supervised_suprem_unet_2100.pth")
    import_checkpoint(src)
    model = load_released("supervised_suprem_unet_2100")
    assert model.class_names == list(get_entry("supervised_suprem_unet_2100").classes)
    assert model.output_activation == "sigmoid" and not model.training
    x = torch.rand(2, 1, 32, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 32, 32, 32, 32)
        assert torch.equal(out, _reference_universal(ckpt)(x))
        # release batch norm: eval output does not depend on running statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.fill_(5.0)
        assert torch.equal(model(x), out)


def test_universal_head_is_a_per_class_dynamic_three_layer_conv():
    torch.manual_seed(0)
    model = _reference_universal(release_like_checkpoint("unet", seed=1))
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        out = model(x)
        bottom, dec = model.backbone.features(x)
        g = model.GAP(bottom).flatten()  # (256,)
        f = model.precls_conv(dec)[0].flatten(1)  # (8, voxels)
        for k in (0, 7, 31):
            t = F.relu(model.text_to_vision(model.organ_embedding[k]))
            p = model.controller.weight.flatten(1) @ torch.cat([g, t]) + model.controller.bias  # (153,)
            w1, w2, w3 = p[:64].view(8, 8), p[64:128].view(8, 8), p[128:136].view(1, 8)
            b1, b2, b3 = p[136:144], p[144:152], p[152:153]
            h = F.relu(w1 @ f + b1[:, None])
            h = F.relu(w2 @ h + b2[:, None])
            logit = (w3 @ h + b3[:, None]).view(32, 32, 32)
            assert torch.allclose(out[0, k], logit, atol=1e-5)


def test_load_released_segresnet_reads_class_count_from_head(tmp_path):
    ckpt = release_like_checkpoint("segresnet", num_classes=25)
    path = save(ckpt, tmp_path / "supervised_suprem_segresnet_2100.pth")
    model = load_released(path)
    assert model.conv_final[2].conv.out_channels == 25
    assert model.class_names[0] == "class_1" and not model.class_names_known
    with torch.no_grad():
        assert model(torch.rand(1, 1, 32, 32, 32)).shape == (1, 25, 32, 32, 32)


# --- fine-tuning weights ---------------------------------------------------------------------------

def test_resolve_pretrained_universal_gives_backbone_without_head(store, tmp_path):
    src = save(release_like_checkpoint("unet"), tmp_path / "supervised_suprem_unet_2100.pth")
    import_checkpoint(src)
    pw = resolve_pretrained("supervised_suprem_unet_2100")
    b = get_backbone("unet")
    assert pw.backbone == "unet" and pw.class_names is None and pw.layout == "universal"
    assert pw.arch_kwargs == {"base_features": 8, "batch_stats_always": True}
    assert pw.source.endswith("supervised_suprem_unet_2100.pth")
    assert not any(k.startswith(b.head_keys) for k in pw.state_dict)
    target = SuPreMUNet3D(1, 5, **pw.arch_kwargs)
    rep = load_matching(target, pw.state_dict, pw.source)
    assert rep.missing == ["out_tr.final_conv.weight", "out_tr.final_conv.bias"] and not rep.unexpected


def test_resolve_pretrained_segresnet_drops_head_of_unknown_order(tmp_path):
    path = save(release_like_checkpoint("segresnet", num_classes=32), tmp_path / "seg.pth")
    pw = resolve_pretrained(path)
    assert pw.backbone == "segresnet" and pw.class_names is None and pw.arch_kwargs["init_filters"] == 8
    assert not any(k.startswith("conv_final.2.conv.") for k in pw.state_dict)
    assert len(pw.state_dict) == len(pw.report.loaded) == 81


def test_models_genesis_layout_transfers_body_not_restoration_head(tmp_path):
    genesis = SuPreMUNet3D(1, 1, base_features=4)
    path = save({"state_dict": OrderedDict(("module." + k, v) for k, v in genesis.state_dict().items())},
                tmp_path / "Genesis_Chest_CT.pt")
    pw = resolve_pretrained(path)
    assert pw.layout == "models_genesis" and pw.backbone == "unet" and pw.class_names is None
    assert len(pw.state_dict) == len(genesis.state_dict()) - 2
    with pytest.raises(CheckpointError, match="no segmentation head"):
        load_released(path)


def test_swin_ssl_layout_maps_to_swinvit(tmp_path):
    kw = dict(feature_size=12, depths=(1, 1, 1, 1), window_size=4)
    ref = SuPreMSwinUNETR(1, 2, **kw)
    ssl = OrderedDict()
    for k, v in ref.state_dict().items():
        if k.startswith("swinViT."):
            old = k[len("swinViT."):].replace("mlp.linear1", "mlp.fc1").replace("mlp.linear2", "mlp.fc2")
            ssl["module." + old] = v
    ssl["module.rotation_head.weight"] = torch.zeros(4, 96)
    ssl["module.contrastive_head.weight"] = torch.zeros(512, 96)
    path = save({"state_dict": ssl}, tmp_path / "model_swinvit.pt")
    pw = resolve_pretrained(path)
    n_vit = sum(k.startswith("swinViT.") for k in ref.state_dict())
    assert pw.layout == "swin_ssl" and pw.backbone == "swinunetr" and pw.class_names is None
    assert len(pw.state_dict) == n_vit and all(k.startswith("swinViT.") for k in pw.state_dict)
    key = "swinViT.layers1.0.blocks.0.mlp.linear1.weight"
    assert torch.equal(pw.state_dict[key], ref.state_dict()[key])


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_list_info_import(store, tmp_path, monkeypatch, capsys):
    from suprem_nnunet.cli.zoo import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPREM_HOME", str(tmp_path / "home"))
    assert main(["list"]) == 0
    assert "supervised_suprem_swinunetr_2100" in capsys.readouterr().out
    assert main(["info", "supervised_suprem_unet_2100"]) == 0
    assert "backbone: unet" in capsys.readouterr().out
    assert main(["info", "supervised_suprem_unet_2100", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["catalog"]["classes_unified"][24] == "celiac_trunk"
    src = save(release_like_checkpoint("unet"), tmp_path / "supervised_suprem_unet_2100.pth")
    assert main(["import", str(src)]) == 0
    assert "layout universal" in capsys.readouterr().out
    assert main(["import", str(src)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("suprem_zoo: error:") and "already in the zoo" in err and "\n" not in err


def test_presets_reproduce_the_suprem_recipe():
    for name in ("unet", "segresnet", "swinunetr"):
        p = load_preset(name)
        b = get_backbone(name)
        assert p["backbone"] == name and p["network_class_name"] == b.network_class_name
        assert p["arch_kwargs"] == b.default_arch_kwargs and p["deep_supervision"] is False
        assert p["orientation"] == "RAS" and p["spacing"] == [1.5, 1.5, 1.5]
        assert p["intensity"]["clip"] == [-175.0, 250.0] and p["intensity"]["scale_to"] == [0.0, 1.0]
        assert p["patch_size"] == [96, 96, 96] and all(s % b.divisible_by == 0 for s in p["patch_size"])
        assert p["sliding_window"]["overlap"] == 0.5 and p["direct_inference"]["overlap"] == 0.75
    with pytest.raises(ValueError, match="no SuPreM preset"):
        load_preset("nnunet")


def test_full_size_unet_release_layout_through_the_file_api(tmp_path):
    from suprem_nnunet.zoo.layouts import synthetic_checkpoint

    layout = read_layout(LAYOUTS / "suprem_unet_2100.json")
    path = save(synthetic_checkpoint(LAYOUTS / "suprem_unet_2100.json"), tmp_path / layout["checkpoint_file"])
    pw = resolve_pretrained(path)
    assert pw.arch_kwargs["base_features"] == 32 and len(pw.state_dict) == layout["n_backbone_tensors"]
    assert len(pw.report.loaded) == layout["n_backbone_tensors"]
    model = load_released(path)
    assert len(model.state_dict()) == layout["n_tensors"]
    assert sum(p.numel() for p in model.parameters()) == layout["n_params"]


def test_renamed_universal_file_still_gets_template_class_names(tmp_path):
    path = save(release_like_checkpoint("unet"), tmp_path / "my_copy.pth")
    model = load_released(path)
    assert model.class_names == list(get_entry("supervised_suprem_unet_2100").classes)


def test_registry_catalog_and_presets_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, suprem_nnunet.networks, suprem_nnunet.zoo, suprem_nnunet.planning.presets as p; "
            "suprem_nnunet.zoo.get_entry('supervised_suprem_unet_2100').classes; p.load_preset('unet'); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
