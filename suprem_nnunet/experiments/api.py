"""Run a protocol end to end: check it and its data, run (or resume) the sweep, write the report."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

from .. import paths
from .data import check_data, check_zoo_names, ensure_phantoms
from .execute import Context, pretrained_weights, run_one
from .protocol import SCALES, ProtocolError, load_protocol, protocol_file
from .report import write_report
from .runner import RunFn, run_sweep
from ..training.run import resolve_device
from .classification_run import run_classification

log = logging.getLogger(__name__)
DEFAULT_OUT = Path("suprem_experiments")


def run_protocol(protocol: Union[str, Path], scale: str = "phantom", trials: Optional[int] = None,
                 out: Union[str, Path] = DEFAULT_OUT, device: str = "auto", run_fn: Optional[RunFn] = None,
                 seed: int = 0, rerun_changed: bool = False, jobs: int = 1) -> Path:
    """Run `protocol` (a shipped name or a .json file) at `scale` into `out/<name>/` and return that
    folder (results.csv, report.md, figures). Phantom scale keeps its data in `out/data`; full scale
    uses the nnU-Net folders of the environment. Nothing runs until the protocol, its datasets, its
    zoo models and its sweep values have been checked. Trial k of every arm is seeded with
    `seed + k`; a results folder whose runs were made under other settings (device, seed, budget,
    data, weights, versions: runner.run_key_fields) stops the run with one line unless
    `rerun_changed`. `jobs` > 1 runs that many runs at once (one torch thread each)."""
    if scale not in SCALES:
        raise ProtocolError(f"unknown scale {scale!r} (known: {', '.join(SCALES)})")
    if trials is not None and trials < 1:
        raise ProtocolError(f"--trials must be at least 1, got {trials}")
    path = protocol_file(protocol)
    p = load_protocol(path)
    sc = p.scale(scale)
    out = Path(out).absolute()
    check_zoo_names(p)
    datasets = check_data(p, scale)  # phantom scale: from the shipped catalog, before any folder is made
    if scale == "phantom":
        paths.setup_environment(str(out / "data"))
        ensure_phantoms(sorted(datasets))

    ctx = Context(out, scale, sc, datasets, str(resolve_device(device)), seed=seed)
    if run_fn is None and p.design == "classification":
        run_fn = run_classification
    if jobs < 1:
        raise ProtocolError(f"--jobs must be at least 1, got {jobs}")
    folder = run_sweep(p, scale, out, ctx, run_fn or run_one, trials, path.read_text(), rerun_changed, jobs,
                       pretrained_weights)
    report = write_report(folder)
    log.info("report: %s", report)
    return folder
