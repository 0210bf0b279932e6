"""Where the network of a CPU prediction runs: `torch`, `compile`, `openvino` or `auto`.

* `torch`: the network as is (with the oneDNN convolution switch of `inference/onednn.py`).
* `compile`: `torch.compile` with inductor and `freezing=True` (weights folded into the graph, convolution
  weights pre-packed for oneDNN). No new dependency, but it needs a C++ compiler at run time (inductor
  builds its kernels with the one `CXX` names, else `g++`/`c++`) and compiles once per window shape:
  12-46 s for full-size networks; the compiled module lives as long as the predictor, so a folder of
  cases pays once. Plain convolutions (oneDNN switch undone: inductor picks its own kernels).
* `openvino`: the optional extra (`pip install 'suprem-nnunet[openvino]'`): the network with two-level
  normalisation means, exported once per model and window shape into a cache folder
  (`inference/openvino_export.py`), run with inference precision f32 set explicitly.
* `auto`: on the first window, every available backend runs it (after its one-time export/compile), its
  logits are checked against torch float32 (max |Δ| / max |logit| <= `TOLERANCE`), and the fastest one
  that passes runs the rest; one that is not installed, fails to build, or misses the tolerance is
  skipped with a log line. Its measurements are kept in `choice`.

`wrap_network` returns an `nn.Module` that the predictor calls in place of its network: nnU-Net's sliding
window, mirroring and `load_state_dict` per fold go through it unchanged (a fold with other weights drops
what was compiled or exported for the old ones). bf16 (opt-in): autocast for `torch`/`compile`, precision
hint bf16 for `openvino`; not with `auto`, which compares against float32.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from .onednn import use_default_convolutions
from .openvino_export import (BackendError, compile_openvino, default_cache_dir, export_openvino, model_hash,
                              openvino_version)
from .openvino_export import INSTALL_HINT
from .onednn import use_onednn_convolutions

log = logging.getLogger(__name__)

BACKENDS = ("torch", "compile", "openvino", "auto")
#: largest max |Δ logits| / max |logit| against torch float32 a backend may show (auto's check, the tests' bound)
TOLERANCE = 1e-4


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| (float64)."""
    got, want = got.detach(), want.detach().double()
    return float((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30))


def cxx_compiler() -> Optional[str]:
    """The C++ compiler inductor would use, or None."""
    import os

    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def check_available(name: str) -> None:
    """BackendError naming the fix when backend `name` cannot run on this machine."""
    if name not in BACKENDS:
        raise BackendError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "compile" and cxx_compiler() is None:
        raise BackendError("--backend compile needs a C++ compiler (g++ or clang++ on PATH, or CXX set); "
                           "install one (e.g. apt-get install g++) or use --backend torch")
    if name == "openvino":
        if openvino_version() is None:
            raise BackendError(f"--backend openvino needs OpenVINO: {INSTALL_HINT}")


def compile_failure(network: nn.Module, shape, e: BaseException) -> str:
    """One line for a torch.compile failure; a broken kernel file (an interrupted compile leaves an empty
    .so in inductor's cache) names the cache to delete."""
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0][:200] if lines else type(e).__name__
    fix = "use --backend torch"
    if "file too short" in text or "invalid ELF header" in text:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        fix = (f"inductor's kernel cache {cache_dir()} holds a broken file left by an interrupted compile: "
               f"delete that folder (or set TORCHINDUCTOR_CACHE_DIR elsewhere), or use --backend torch")
    return f"torch.compile could not build {type(network).__name__} for input {list(shape)} ({first}); {fix}"


class BackendNetwork(nn.Module):
    """Runs `network` on one backend; `load_state_dict` loads into `network` (nnU-Net's per-fold call)."""

    name = "torch"

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self._digest: Optional[str] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        own = self.network.state_dict()
        same = own.keys() == state_dict.keys() and all(torch.equal(own[k], state_dict[k].to(own[k].device))
                                                        for k in own)
        result = self.network.load_state_dict(state_dict, strict=strict, assign=assign)
        if not same:
            self.reset()
        return result

    def reset(self) -> None:
        """Drop what was built for the old weights."""
        self._digest = None

    def digest(self) -> str:
        if self._digest is None:
            self._digest = model_hash(self.network)
        return self._digest

    def provenance(self) -> Dict:
        return {"backend": self.name}


class CompiledNetwork(BackendNetwork):
    """torch.compile (inductor, freezing); one compiled graph per input shape, kept for the predictor's life."""

    name = "compile"

    def __init__(self, network: nn.Module) -> None:
        super().__init__(network)
        use_default_convolutions(network)
        self._compiled: Optional[Callable] = None

    def reset(self) -> None:
        super().reset()
        self._compiled = None
        torch._dynamo.reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None:
            self._compiled = torch.compile(self.network, backend="inductor", dynamic=False,
                                           options={"freezing": True})
        try:
            return self._compiled(x)
        except Exception as e:  # noqa: BLE001 -- dynamo/inductor failures become one line naming the fix
            if not type(e).__module__.startswith(("torch._inductor", "torch._dynamo")):
                raise
            raise BackendError(compile_failure(self.network, x.shape, e)) from None

    def provenance(self) -> Dict:
        return {"backend": self.name, "torch": torch.__version__, "freezing": True}


class OpenVinoNetwork(BackendNetwork):
    """The network exported to OpenVINO per input shape (cached on disk) and run on its CPU plugin."""

    name = "openvino"

    def __init__(self, network: nn.Module, cache_dir: Optional[Path] = None, bf16: bool = False) -> None:
        super().__init__(network)
        use_default_convolutions(network)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.bf16 = bf16
        self._compiled: Dict[Tuple[int, ...], object] = {}

    def reset(self) -> None:
        super().reset()
        self._compiled = {}

    def prepare(self, shape: Tuple[int, ...]):
        model = self._compiled.get(shape)
        if model is None:
            entry = export_openvino(self.network, shape, self.cache_dir, self.digest())
            model = self._compiled[shape] = compile_openvino(entry, torch.get_num_threads(), self.bf16)
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.prepare(tuple(int(s) for s in x.shape))
        out = model(x.detach().float().cpu().contiguous().numpy())[0]
        return torch.from_numpy(out.copy()).to(x.device)

    def provenance(self) -> Dict:
        return {"backend": self.name, "openvino": openvino_version(), "precision": "bf16" if self.bf16 else "f32",
                "cache": str(self.cache_dir)}


@dataclass
class Trial:
    """One backend's run of auto's first window."""

    backend: str
    seconds: Optional[float] = None
    relative_error: Optional[float] = None
    problem: Optional[str] = None


class AutoNetwork(BackendNetwork):
    """Picks, on the first window, the fastest available backend within TOLERANCE of torch float32."""

    name = "auto"
    candidates = ("openvino", "compile")

    def __init__(self, network: nn.Module, cache_dir: Optional[Path] = None) -> None:
        super().__init__(network)
        self.cache_dir = cache_dir
        self.chosen: Optional[BackendNetwork] = None
        self.trials: List[Trial] = []

    def reset(self) -> None:
        super().reset()
        self.chosen = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.chosen is None:
            return self._choose(x)
        return self.chosen(x)

    def _choose(self, x: torch.Tensor) -> torch.Tensor:
        use_onednn_convolutions(self.network)
        want = self.network(x)  # warm-up, as every candidate gets one
        t = time.perf_counter()
        want = self.network(x)
        self.trials = [Trial("torch", time.perf_counter() - t, 0.0)]
        best: BackendNetwork = BackendNetwork(self.network)
        best_s, best_out = self.trials[0].seconds, want
        for name in self.candidates:
            trial = Trial(name)
            self.trials.append(trial)
            try:
                check_available(name)
                backend = make_backend(name, self.network, self.cache_dir)
                backend(x)  # one-time export / compile
                t = time.perf_counter()
                got = backend(x)
                trial.seconds = time.perf_counter() - t
                trial.relative_error = relative_error(got, want)
            except BackendError as e:
                trial.problem = str(e)
            except Exception as e:  # noqa: BLE001 -- auto falls back on any failure of a candidate
                trial.problem = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
            use_onednn_convolutions(self.network)  # the candidates undo it; torch (the fallback) keeps it
            if trial.problem is None and trial.relative_error > TOLERANCE:
                trial.problem = f"max |Δ logits| / max |logit| {trial.relative_error:.1e} > {TOLERANCE:g}"
            if trial.problem is not None:
                log.info("backend auto: %s skipped (%s)", name, trial.problem)
                continue
            log.info("backend auto: %s %.3f s per window (torch %.3f s), Δ %.1e", name, trial.seconds,
                     self.trials[0].seconds, trial.relative_error)
            if trial.seconds < best_s:
                best, best_s, best_out = backend, trial.seconds, got
        if best.name != "torch":
            use_default_convolutions(self.network)
        self.chosen = best
        log.info("backend auto: %s", best.name)
        return best_out

    def provenance(self) -> Dict:
        chosen = self.chosen.provenance() if self.chosen is not None else {"backend": None}
        return {**chosen, "requested": "auto",
                "trials": [{k: v for k, v in t.__dict__.items() if v is not None} for t in self.trials]}


def make_backend(name: str, network: nn.Module, cache_dir: Optional[Path] = None, bf16: bool = False) -> BackendNetwork:
    """The network wrapped for backend `name` (BackendError when it cannot run here)."""
    check_available(name)
    if name == "auto" and bf16:
        raise BackendError("--backend auto compares against float32; with --bf16 name the backend "
                           "(torch, compile or openvino)")
    if name == "compile":
        return CompiledNetwork(network)
    if name == "openvino":
        return OpenVinoNetwork(network, cache_dir, bf16)
    if name == "auto":
        return AutoNetwork(network, cache_dir)
    return BackendNetwork(network)


def cpu_backend(backend: Optional["BackendConfig"], network: nn.Module, device: Union[str, torch.device],
                bf16: bool = False) -> Optional[BackendNetwork]:
    """`network` wrapped for `backend` when it names one other than torch, else None; BackendError when
    `device` is not a CPU (the one check every caller that takes --backend needs)."""
    if backend is None or backend.name == "torch":
        return None
    dev = torch.device(device)
    if dev.type != "cpu":
        raise BackendError(f"--backend {backend.name} is for CPU prediction, the device is {dev.type}")
    return make_backend(backend.name, network, backend.cache_dir, bf16)


class Bf16Autocast(BackendNetwork):
    """`network` (a plain one or a torch/compile backend) under CPU bfloat16 autocast, its output cast
    back to float32: `--bf16` where no predictor applies autocast itself (released checkpoints)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__(network)
        self.name = network.name if isinstance(network, BackendNetwork) else "torch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.network(x).float()

    def provenance(self) -> Dict:
        return {**network_provenance(self.network), "precision": "bf16 (autocast)"}


def release_runner(backend: Optional["BackendConfig"], network: nn.Module, device: Union[str, torch.device],
                   bf16: bool = False) -> Optional[nn.Module]:
    """What runs a released checkpoint's windows: `cpu_backend`'s wrapper, or None for plain torch; with
    `bf16` (CPU only) OpenVINO's bf16 precision hint, torch and compile under bfloat16 autocast."""
    dev = torch.device(device)
    if bf16 and dev.type != "cpu":
        raise BackendError(f"--bf16 is for CPU prediction, the device is {dev.type}")
    runner = cpu_backend(backend, network, device, bf16)
    if bf16 and not isinstance(runner, OpenVinoNetwork):
        runner = Bf16Autocast(runner if runner is not None else network)
    return runner


def network_provenance(network: nn.Module) -> Dict:
    """What ran the predictor's network: {"backend": ..., versions...} (a plain network: torch)."""
    return network.provenance() if isinstance(network, BackendNetwork) else {"backend": "torch"}


@dataclass(frozen=True)
class BackendConfig:
    """Which backend runs the network, and where OpenVINO's exports are cached (None: default_cache_dir())."""

    name: str = "torch"
    cache_dir: Optional[Union[str, Path]] = None
