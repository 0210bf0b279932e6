"""OpenVINO export of a segmentation network for CPU prediction, with a norm rewrite and a cache.

OpenVINO computes the mean of a normalisation over a whole 3D window in one accumulation whose
rounding grows with the window (and it fuses stacked means into one): on real-size windows its
logits differ from torch float32 by 2.4e-4 to 8.4e-4 of the largest logit. `two_level_norms`
replaces every instance norm, group norm and batch-statistics batch norm of a copy of the network by
one that takes the mean over (H, W) first, then a *sum* over D times 1/D (a sum, so that OpenVINO does
not fuse the two means back into one), for the mean and for the variance: within 3e-6 of torch.

`export_openvino` converts that copy for one input shape (OpenVINO's IR is static here) and saves it
uncompressed (float32 weights) into a cache entry `<cache>/<model hash>/<shape>/`, written under a
temporary name and renamed; `meta.json` names the OpenVINO and suprem-nnunet versions that wrote it.
`compile_openvino` loads an entry with the inference precision set explicitly (`f32` unless bf16 is
asked for): OpenVINO's default on CPUs with AVX512-BF16 or AMX is bf16.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from .. import __version__
from ..errors import InputError
from ..networks.unet3d import BatchStatsBatchNorm3d

log = logging.getLogger(__name__)

#: the openvino version the extra pins (setup.py: suprem-nnunet[openvino])
OPENVINO_PIN = "2026.4.1"
INSTALL_HINT = f"pip install 'suprem-nnunet[openvino]' (openvino=={OPENVINO_PIN})"


class BackendError(InputError):
    """A network backend cannot run here (not installed, export failed, stale cache): one line naming the fix."""


def openvino_version() -> Optional[str]:
    """The installed openvino's version, or None when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__.split("-")[0]


def _two_level_mean(x: torch.Tensor, spatial_from: int) -> torch.Tensor:
    """Mean of `x` over its dims from `spatial_from` on (the first is D), as mean over the last two dims,
    then a sum over the rest times 1 / their size (keepdim)."""
    m = x.mean(dim=(-2, -1), keepdim=True)
    rest = tuple(range(spatial_from, x.dim() - 2))
    n = 1
    for d in rest:
        n *= x.shape[d]
    return m.sum(dim=rest, keepdim=True) * (1.0 / n) if rest else m


class TwoLevelNorm(nn.Module):
    """Normalisation over (group channels,) D, H, W with two-level means (see module doc); the statistics of
    `norm` (InstanceNorm, GroupNorm or a batch-statistics BatchNorm over a batch of one) and its affine."""

    def __init__(self, norm: nn.Module, groups: int) -> None:
        super().__init__()
        self.groups, self.eps = groups, float(norm.eps)
        self.weight = norm.weight if getattr(norm, "affine", True) and norm.weight is not None else None
        self.bias = norm.bias if getattr(norm, "affine", True) and norm.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        g = x.reshape(n, self.groups, c // self.groups, *x.shape[2:]) if self.groups else x
        if self.groups:  # channels of a group join the outer level: mean over (H, W), sum over (C/G, D)
            mean = _two_level_mean(g, 2)
            var = _two_level_mean((g - mean) ** 2, 2)
        else:
            mean = _two_level_mean(x, 2)
            var = _two_level_mean((x - mean) ** 2, 2)
            g = x
        y = ((g - mean) * torch.rsqrt(var + self.eps)).reshape(x.shape)
        shape = (1, c) + (1,) * (x.dim() - 2)
        if self.weight is not None:
            y = y * self.weight.reshape(shape)
        if self.bias is not None:
            y = y + self.bias.reshape(shape)
        return y


def _replacement(module: nn.Module) -> Optional[nn.Module]:
    if isinstance(module, nn.GroupNorm):
        return TwoLevelNorm(module, module.num_groups)
    if isinstance(module, nn.modules.instancenorm._InstanceNorm) and not module.track_running_stats:
        return TwoLevelNorm(module, 0)
    if isinstance(module, BatchStatsBatchNorm3d):  # batch statistics in eval too; one window: per channel
        return TwoLevelNorm(module, 0)
    return None


def two_level_norms(network: nn.Module) -> nn.Module:
    """A copy of `network` (eval mode) whose 3D normalisations use two-level means (see module doc)."""
    net = copy.deepcopy(network).eval()
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            new = _replacement(child)
            if new is not None:
                setattr(module, child_name, new)
    return net


def model_hash(network: nn.Module) -> str:
    """sha256 (16 hex digits) of the network's class, state-dict names, shapes and values."""
    h = hashlib.sha256(f"{type(network).__module__}.{type(network).__qualname__}".encode())
    for k, v in network.state_dict().items():
        h.update(f"{k}{tuple(v.shape)}{v.dtype}".encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """$SUPREM_BACKEND_CACHE, else ~/.cache/suprem_nnunet/openvino."""
    env = os.environ.get("SUPREM_BACKEND_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "suprem_nnunet" / "openvino"


def cache_entry(cache_dir: Path, digest: str, shape: Sequence[int]) -> Path:
    return Path(cache_dir) / digest / "x".join(str(int(s)) for s in shape)


def _meta(shape: Sequence[int]) -> Dict:
    return {"openvino": openvino_version(), "suprem_nnunet": __version__, "input_shape": [int(s) for s in shape]}


def check_entry(entry: Path, shape: Sequence[int]) -> bool:
    """True when `entry` holds a model for `shape` written by these versions; False when absent;
    BackendError naming the folder when it was written by other versions (or is unreadable)."""
    meta_file = entry / "meta.json"
    if not meta_file.is_file():
        return False
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise BackendError(f"{meta_file}: unreadable OpenVINO cache entry ({e}); delete {entry} to export again") from None
    want = _meta(shape)
    if meta != want or not (entry / "model.xml").is_file():
        raise BackendError(f"{entry}: OpenVINO cache written by openvino {meta.get('openvino')} / suprem-nnunet "
                           f"{meta.get('suprem_nnunet')} for input {meta.get('input_shape')}, this is openvino "
                           f"{want['openvino']} / suprem-nnunet {want['suprem_nnunet']}; delete {entry} to export again")
    return True


def export_openvino(network: nn.Module, shape: Sequence[int], cache_dir: Path, digest: Optional[str] = None) -> Path:
    """The cache entry (folder with model.xml) of `network` for input `shape`, exported now if absent.
    BackendError when openvino is missing, the cache is stale or the export fails."""
    if openvino_version() is None:
        raise BackendError(f"--backend openvino needs OpenVINO: {INSTALL_HINT}")
    import openvino as ov

    entry = cache_entry(cache_dir, digest or model_hash(network), shape)
    if check_entry(entry, shape):
        return entry
    net = two_level_norms(network)
    tmp = entry.with_name(f".{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        with torch.no_grad():
            ov_model = ov.convert_model(net, example_input=torch.zeros(tuple(shape)), input=[tuple(int(s) for s in shape)])
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
        (tmp / "meta.json").write_text(json.dumps(_meta(shape)))
        if entry.exists():  # another process exported it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, entry)
    except BackendError:
        raise
    except Exception as e:  # noqa: BLE001 -- any converter failure becomes one line naming the fix
        shutil.rmtree(tmp, ignore_errors=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BackendError(f"OpenVINO could not export {type(network).__name__} for input {list(shape)} "
                           f"({type(e).__name__}: {first[:200]}); use --backend torch or compile") from None
    log.info("exported %s for input %s to %s", type(network).__name__, list(shape), entry)
    return entry


def compile_openvino(entry: Path, threads: int, bf16: bool = False):
    """The compiled OpenVINO model of a cache entry on CPU, inference precision f32 (bf16 only if asked)."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "INFERENCE_NUM_THREADS": int(threads),
              "PERFORMANCE_HINT": "LATENCY"}
    return core.compile_model(core.read_model(str(entry / "model.xml")), "CPU", config)
