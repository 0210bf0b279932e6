"""Resuming a training run: which checkpoint of a fold folder to continue from, and the temporary
files a killed run leaves behind. A file that cannot be read (truncated, written by another tool, a
damaged disk) is skipped with a warning."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from ..networks.checkpoint import TEMP_PREFIX, load_training_checkpoint

log = logging.getLogger(__name__)

#: candidates for resuming; the one with the most epochs wins, ties in this order
RESUME_NAMES = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


def remove_temp_checkpoints(folder: Union[str, Path]) -> None:
    """Delete temporary checkpoint files a killed run left in a fold folder."""
    for p in Path(folder).glob(f"{TEMP_PREFIX}*-checkpoint_*.pth"):
        log.info("removing %s, left by an interrupted checkpoint write", p)
        p.unlink(missing_ok=True)


def read_resume_checkpoint(folder: Union[str, Path],
                           map_location: Union[str, torch.device] = "cpu") -> Optional[Tuple[Path, Dict]]:
    """(path, checkpoint) to resume training in fold folder `folder` from: among checkpoint_final,
    _latest and _best the readable one with the most epochs (ties: that order); None when there is
    none. A file that cannot be read (truncated, not a checkpoint) is skipped with a warning."""
    best: Optional[Tuple[Path, Dict]] = None
    for name in RESUME_NAMES:
        path = Path(folder) / name
        if not path.is_file():
            continue
        try:
            ckpt = load_training_checkpoint(path, map_location)
            epoch = int(ckpt["current_epoch"])
        except (ValueError, KeyError, TypeError) as e:  # CheckpointError is a ValueError
            reason = f"no {e} entry" if isinstance(e, KeyError) else (str(e).splitlines() or [type(e).__name__])[0]
            log.warning("%s: skipped for resuming, it cannot be read (%s)", path, reason)
            continue
        if best is None or epoch > int(best[1]["current_epoch"]):
            best = (path, ckpt)
    return best
