"""Checkpoint files: safe reading (``torch.load(weights_only=True)`` only, one-line errors naming the
file) and durable writing (a temporary name in the same folder, flushed, then renamed).

Checkpoints are written to `.tmp-<pid>-<name>` in the same folder, flushed to disk and renamed, so a
kill never leaves a truncated file under a checkpoint's name."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import torch

from ..errors import InputError

PathLike = Union[str, Path]
StateDict = Dict[str, torch.Tensor]
TEMP_PREFIX = ".tmp-"

#: where a state dict may sit inside a checkpoint, in the order they are tried
STATE_DICT_ENTRIES = ("net", "state_dict", "network_weights", "model", "model_state_dict")


class CheckpointError(InputError):
    """A checkpoint that cannot be used; the message is one line and names the file."""


def _numpy_safe_globals() -> list:
    """numpy scalar / dtype reconstructors: nnU-Net's own checkpoints log numpy floats."""
    import numpy as np

    out = [np.dtype, type(np.dtype("float64")), type(np.dtype("float32")), type(np.dtype("int64"))]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            m = __import__(mod, fromlist=["scalar"])
            out.append(m.scalar)
            break
        except (ImportError, AttributeError):
            continue
    return out


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu",
                    allow_numpy: bool = False) -> Any:
    """Load `path` with ``weights_only=True``; a file that needs arbitrary unpickling is refused.

    `allow_numpy` additionally admits numpy scalars and dtypes (nnU-Net training checkpoints).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    try:
        if allow_numpy:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                return torch.load(p, map_location=map_location, weights_only=True)
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        for line in str(e).splitlines():
            if "Unsupported global" in line or "GLOBAL" in line:
                detail = line.strip()
                break
        raise CheckpointError(f"{p}: refused, the checkpoint holds pickled Python objects, not just "
                              f"tensors ({detail}); re-save its state dict with torch.save") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint ({first})") from None


def extract_state_dict(obj: Any, path: PathLike = "<checkpoint>") -> StateDict:
    """The tensor state dict inside a loaded checkpoint (``net``, ``state_dict`` ... or itself)."""
    if isinstance(obj, Mapping):
        for key in STATE_DICT_ENTRIES:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: no state dict found (looked for {', '.join(STATE_DICT_ENTRIES)} "
                              f"or a mapping of tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: the state dict holds no tensors")
    return dict(tensors)


def load_state_dict_file(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> StateDict:
    """`load_checkpoint` + `extract_state_dict`."""
    return extract_state_dict(load_checkpoint(path, map_location), path)


def load_training_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict:
    """An nnU-Net-style training checkpoint dict (numpy scalars admitted); arbitrary pickles are refused."""
    ckpt = load_checkpoint(path, map_location, allow_numpy=True)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def temp_checkpoint_path(path: Union[str, Path]) -> Path:
    """Where `path` is written before it is renamed into place (same folder, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")


def replace_durably(tmp: Path, path: Path) -> None:
    """Flush `tmp` to disk, rename it to `path` (atomic on POSIX) and flush the folder entry."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
