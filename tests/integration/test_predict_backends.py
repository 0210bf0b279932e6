"""CPU network backends (inference/backends.py, openvino_export.py): logits within 1e-4 of torch float32.

Proves: (1) the two-level norm rewrite computes the same normalisation as torch for the three
backbones' adapters (instance, group and batch-statistics norms); (2) OpenVINO (f32, exported into a
cache with that rewrite) and torch.compile (inductor, freezing) give max |Δ logits| / max |logit| <=
1e-4 on tiny adapters; (3) bad input is one line naming the fix: OpenVINO missing, export failure, a
cache written by another version; `auto` falls back instead and records why; (4) `predict` records the
backend and threads in the output's dataset.json, and on the real CT every backend's labels equal
torch's (marked slow).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from suprem_nnunet.inference import backends as bk
from suprem_nnunet.inference import openvino_export as ove
from suprem_nnunet.inference.backends import TOLERANCE, BackendError, make_backend, relative_error
from suprem_nnunet.networks import get_backbone, network_class

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ADAPTERS = ("unet", "segresnet", "swinunetr")
needs_openvino = pytest.mark.skipif(ove.openvino_version() is None, reason="openvino (the [openvino] extra) not installed")
needs_cxx = pytest.mark.skipif(bk.cxx_compiler() is None, reason="no C++ compiler for torch.compile")


def tiny_adapter(name: str):
    torch.manual_seed(0)
    b = get_backbone(name)
    net = network_class(name)(input_channels=1, num_classes=3, deep_supervision=False, **b.test_arch_kwargs).eval()
    side = b.min_patch_side or 32
    return net, torch.randn(1, 1, side, side, side)


def small_unet() -> nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    torch.manual_seed(0)
    return PlainConvUNet(1, 2, [4, 8], nn.Conv3d, 3, [1, 2], 1, 3, 1, False, nn.InstanceNorm3d,
                         {"eps": 1e-5, "affine": True}, None, None, nn.LeakyReLU, {"inplace": True}).eval()


@pytest.mark.parametrize("name", ADAPTERS)
def test_two_level_norms_compute_the_same_network(name):
    net, x = tiny_adapter(name)
    for m in net.modules():  # non-trivial affine parameters
        if isinstance(m, (nn.GroupNorm, nn.InstanceNorm3d, nn.BatchNorm3d)) and m.weight is not None:
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    rewritten = ove.two_level_norms(net)
    replaced = sum(isinstance(m, ove.TwoLevelNorm) for m in rewritten.modules())
    assert replaced > 0 and not any(isinstance(m, ove.TwoLevelNorm) for m in net.modules())
    with torch.inference_mode():
        assert relative_error(rewritten(x), net(x)) < 1e-5


@needs_openvino
@pytest.mark.parametrize("name", ADAPTERS)
def test_openvino_matches_torch_float32(name, tmp_path):
    net, x = tiny_adapter(name)
    with torch.inference_mode():
        want = net(x)
        backend = make_backend("openvino", net, tmp_path)
        got = backend(x)
    assert got.shape == want.shape and relative_error(got, want) <= TOLERANCE
    entry = ove.cache_entry(tmp_path, backend.digest(), x.shape)
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["openvino"] == ove.openvino_version() and (entry / "model.xml").is_file()
    assert backend.provenance()["precision"] == "f32"


@needs_openvino
def test_openvino_compiles_at_f32_not_the_cpu_default(tmp_path):
    net = small_unet()
    entry = ove.export_openvino(net, (1, 1, 16, 16, 16), tmp_path)
    compiled = ove.compile_openvino(entry, 1)
    assert "float32" in str(compiled.get_property("INFERENCE_PRECISION_HINT"))


@needs_openvino
def test_openvino_cache_written_by_another_version_is_one_line(tmp_path):
    net, shape = small_unet(), (1, 1, 16, 16, 16)
    entry = ove.export_openvino(net, shape, tmp_path)
    assert ove.export_openvino(net, shape, tmp_path) == entry  # reused
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "openvino": "2024.0.0"}))
    with pytest.raises(BackendError, match=r"written by openvino 2024\.0\.0 .*delete .* to export again") as e:
        ove.export_openvino(net, shape, tmp_path)
    assert "\n" not in str(e.value)


def test_openvino_missing_names_the_extra(monkeypatch):
    monkeypatch.setattr(bk, "openvino_version", lambda: None)
    with pytest.raises(BackendError, match=r"pip install 'suprem-nnunet\[openvino\]'"):
        make_backend("openvino", small_unet())


@needs_openvino
def test_failed_export_is_one_line_and_auto_falls_back(tmp_path, monkeypatch):
    class Unexportable(nn.Module):
        def forward(self, x):
            if torch.jit.is_tracing() or torch.compiler.is_compiling():
                raise RuntimeError("this network cannot be traced")
            return x * 2

    with pytest.raises(BackendError, match=r"OpenVINO could not export Unexportable .*use --backend torch or compile"):
        with torch.inference_mode():
            make_backend("openvino", Unexportable(), tmp_path)(torch.ones(1, 1, 4, 4, 4))
    monkeypatch.setattr(bk.AutoNetwork, "candidates", ("openvino",))
    auto = make_backend("auto", Unexportable(), tmp_path)
    with torch.inference_mode():
        out = auto(torch.ones(1, 1, 4, 4, 4))
    assert torch.equal(out, torch.full((1, 1, 4, 4, 4), 2.0))
    prov = auto.provenance()
    assert prov["backend"] == "torch" and prov["requested"] == "auto"
    assert "could not export" in prov["trials"][1]["problem"]


def test_auto_rejects_a_backend_outside_the_tolerance(monkeypatch):
    class Drifting(bk.BackendNetwork):
        name = "openvino"

        def forward(self, x):
            return self.network(x) * (1 + 1e-3)

    monkeypatch.setattr(bk.AutoNetwork, "candidates", ("openvino",))
    monkeypatch.setattr(bk, "check_available", lambda name: None)
    monkeypatch.setattr(bk, "make_backend", lambda name, net, cache=None, bf16=False: Drifting(net))
    auto = bk.AutoNetwork(small_unet())
    with torch.inference_mode():
        auto(torch.randn(1, 1, 16, 16, 16))
    assert auto.chosen.name == "torch" and "> 0.0001" in auto.trials[1].problem


@needs_cxx
def test_compile_matches_torch_float32():
    net = small_unet()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.inference_mode():
        want = net(x)
        backend = make_backend("compile", net)
        got = backend(x)
        again = backend(torch.flip(x, (2,)))  # same shape: the compiled graph is reused
    assert relative_error(got, want) <= TOLERANCE
    assert relative_error(again, net(torch.flip(x, (2,)))) <= TOLERANCE
    assert backend.provenance() == {"backend": "compile", "torch": torch.__version__, "freezing": True}


@pytest.mark.slow
@needs_cxx
@pytest.mark.parametrize("name", ADAPTERS)
def test_compile_matches_torch_on_the_adapters(name):
    net, x = tiny_adapter(name)
    with torch.inference_mode():
        want = net(x)
        got = make_backend("compile", net)(x)
    assert relative_error(got, want) <= TOLERANCE


def test_unknown_backend_and_gpu_are_refused():
    with pytest.raises(BackendError, match="--backend must be one of torch, compile, openvino, auto"):
        make_backend("onnx", small_unet())
    with pytest.raises(BackendError, match="--backend auto compares against float32"):
        make_backend("auto", small_unet(), bf16=True)


def band_model_on_3mm(unet_scale: float = 0.3):
    """The benchmark's band network at the real CT's 3 mm with a seeded U-Net whose output moves labels."""
    from suprem_nnunet.benchmarks.reference_nets import band_model
    from suprem_nnunet.labels import ATLAS_CLASSES

    names = [c if isinstance(c, str) else c.name for c in ATLAS_CLASSES][:8]
    m = band_model(names, spacing=(3.0, 3.0, 3.0), patch=(32, 32, 32), unet_features=4)
    m.plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["unet_scale"] = unet_scale
    return m


def predict_folder(model, image, out, backend: str, cache, threads=None):
    import SimpleITK as sitk

    from suprem_nnunet.inference.backends import BackendConfig
    from suprem_nnunet.inference.predict import predict

    written = predict(image, out, model, step_size=1.0, backend=BackendConfig(backend, cache), threads=threads)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(written[0]))), json.loads((out / "dataset.json").read_text())


def test_predict_records_backend_and_threads(tmp_path):
    from helpers.paths import real_data

    image = real_data("totalseg_example_sm", "ct.nii.gz")
    _, meta = predict_folder(band_model_on_3mm(), image, tmp_path / "torch", "torch", None, threads=1)
    assert meta["inference"] == {"backend": "torch", "device": "cpu", "threads": 1, "bf16": False}
    with pytest.raises(ValueError, match="--threads must be at least 1, got 0"):
        predict_folder(band_model_on_3mm(), image, tmp_path / "zero", "torch", None, threads=0)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("openvino", marks=needs_openvino), pytest.param("compile", marks=needs_cxx)])
def test_real_ct_labels_equal_torch(backend, tmp_path):
    from helpers.paths import real_data

    image = real_data("totalseg_example_sm", "ct.nii.gz")
    model = band_model_on_3mm()
    want, _ = predict_folder(model, image, tmp_path / "torch", "torch", None)
    got, meta = predict_folder(model, image, tmp_path / backend, backend, tmp_path / "cache")
    assert meta["inference"]["backend"] == backend
    assert len(np.unique(want)) > 3  # the U-Net's share moves labels: equality is a real check
    assert np.array_equal(got, want), f"{int((got != want).sum())} voxels differ"


def test_predict_without_the_extra_stops_before_writing(tmp_path, monkeypatch):
    from helpers.paths import real_data
    from suprem_nnunet.cli.common import one_line

    image = real_data("totalseg_example_sm", "ct.nii.gz")
    monkeypatch.setattr(bk, "openvino_version", lambda: None)
    with pytest.raises(BackendError) as e:
        predict_folder(band_model_on_3mm(), image, tmp_path / "out", "openvino", None)
    assert one_line(e.value) == ("--backend openvino needs OpenVINO: pip install 'suprem-nnunet[openvino]' "
                                 f"(openvino=={ove.OPENVINO_PIN})")
    assert not list((tmp_path / "out").glob("*.nii.gz")) and not (tmp_path / "out" / "dataset.json").exists()


def test_broken_inductor_cache_names_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    e = ImportError(f"{tmp_path}/inductor/7k/c7k.main.so: file too short")
    line = bk.compile_failure(small_unet(), (1, 1, 16, 16, 16), e)
    assert "\n" not in line and line.startswith("torch.compile could not build PlainConvUNet for input [1, 1, 16, 16, 16]")
    assert f"inductor's kernel cache {tmp_path / 'inductor'} holds a broken file" in line


@needs_openvino
def test_a_released_checkpoint_runs_on_openvino_within_the_tolerance_and_says_so(tmp_path):
    """Unit: one release-layout U-Net (tiny widths, random weights, Universal head) on one 32^3 window, then
    one synthetic CT through `suprem_predict`: logits within TOLERANCE of torch, the choice in the sidecar."""
    import SimpleITK as sitk

    from suprem_nnunet.cli.predict import main as predict_main
    from suprem_nnunet.zoo.layouts import release_like_checkpoint
    from suprem_nnunet.zoo.release import load_released

    ckpt = tmp_path / "supervised_suprem_unet_2100.pth"
    torch.save(release_like_checkpoint("unet", seed=3), ckpt)
    model = load_released(ckpt).eval()
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = model(x)
        got = make_backend("openvino", model, tmp_path / "cache")(x)
    assert got.shape == want.shape and relative_error(got, want) <= TOLERANCE
    img = sitk.GetImageFromArray(np.random.default_rng(0).normal(40, 30, (24, 40, 40)).astype(np.int16))
    img.SetSpacing((2.0, 2.0, 2.5))
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    assert predict_main(["-i", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "out"), "-m", str(ckpt),
                         "--backend", "openvino", "--backend-cache", str(tmp_path / "cache"), "--fast"]) == 0
    side = json.loads((tmp_path / "out" / "ct.json").read_text())
    assert side["protocol"]["network"]["backend"] == "openvino"
    assert side["protocol"]["network"]["precision"] == "f32"


def test_bf16_reaches_a_released_checkpoint_and_the_sidecar_says_so(tmp_path):
    """Unit: one release-layout U-Net (tiny widths, random weights) on one 32^3 window, then one synthetic CT
    through `suprem_predict --bf16`: the window runs under bfloat16 autocast (output float32, logits close
    to float32's but not equal), the sidecar records it, and --bf16 off the CPU is one line."""
    import SimpleITK as sitk

    from suprem_nnunet.cli.predict import main as predict_main
    from suprem_nnunet.zoo.layouts import release_like_checkpoint
    from suprem_nnunet.zoo.release import load_released

    ckpt = tmp_path / "supervised_suprem_unet_2100.pth"
    torch.save(release_like_checkpoint("unet", seed=3), ckpt)
    model = load_released(ckpt).eval()
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    runner = bk.release_runner(None, model, "cpu", bf16=True)
    with torch.inference_mode():
        want, got = model(x), runner(x)
    assert got.dtype == torch.float32 and 0 < relative_error(got, want) <= 5e-2
    assert bk.release_runner(None, model, "cpu") is None  # float32 torch: the model itself runs
    with pytest.raises(BackendError, match="--bf16 is for CPU"):
        bk.release_runner(None, model, "cuda", bf16=True)
    img = sitk.GetImageFromArray(np.random.default_rng(0).normal(40, 30, (24, 40, 40)).astype(np.int16))
    img.SetSpacing((2.0, 2.0, 2.5))
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    assert predict_main(["-i", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "out"), "-m", str(ckpt),
                         "--bf16", "--fast"]) == 0
    network = json.loads((tmp_path / "out" / "ct.json").read_text())["protocol"]["network"]
    assert network == {"backend": "torch", "precision": "bf16 (autocast)"}
