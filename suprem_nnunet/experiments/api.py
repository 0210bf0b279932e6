"""Run a protocol end to end: check it and its data, run (or resume) the sweep, write the report."""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

from .. import paths
from ..locking import LOCK_DIR_VAR, file_lock
from ..sharding import check_part
from .data import check_data, check_zoo_names, ensure_phantoms
from .execute import Context, pretrained_weights, run_one
from .protocol import SCALES, ProtocolError, load_protocol, protocol_file
from .report import write_report
from ..training.run import resolve_device
from .classification_run import run_classification
from .runner import RunFn, collect, run_sweep
from .shards import merged_runs

log = logging.getLogger(__name__)
DEFAULT_OUT = Path("suprem_experiments")


def run_protocol(protocol: Union[str, Path], scale: str = "phantom", trials: Optional[int] = None,
                 out: Union[str, Path] = DEFAULT_OUT, device: str = "auto", run_fn: Optional[RunFn] = None,
                 seed: int = 0, rerun_changed: bool = False, jobs: int = 1,
                 shard: Optional[Tuple[int, int]] = None) -> Path:
    """Run `protocol` (a shipped name or a .json file) at `scale` into `out/<name>/` and return that
    folder (results.csv, report.md, figures). Phantom scale keeps its data in `out/data`; full scale
    uses the nnU-Net folders of the environment. Nothing runs until the protocol, its datasets, its
    zoo models and its sweep values have been checked. Trial k of every arm is seeded with
    `seed + k`; a results folder whose runs were made under other settings (device, seed, budget,
    data, weights, versions: runner.run_key_fields) stops the run with one line unless
    `rerun_changed`. `jobs` > 1 runs that many runs at once (one torch thread each). `shard` (K, N):
    only shard K of N's runs (experiments/shards.py), no report; the shards coordinate through locks
    in `out/.locks` (unless SUPREM_LOCK_DIR names another shared folder)."""
    if scale not in SCALES:
        raise ProtocolError(f"unknown scale {scale!r} (known: {', '.join(SCALES)})")
    if trials is not None and trials < 1:
        raise ProtocolError(f"--trials must be at least 1, got {trials}")
    path = protocol_file(protocol)
    p = load_protocol(path)
    p.scale(scale)  # one line when the protocol lacks this scale
    if shard is not None:
        check_part(shard[1], shard[0], ("--shard K/N: N", "--shard K/N: K"))
    out = Path(out).absolute()
    check_zoo_names(p)
    datasets = check_data(p, scale)  # phantom scale: from the shipped catalog, before any folder is made
    with shared_locks(out / ".locks" if shard else None):
        return _run(p, path, scale, trials, out, device, run_fn, seed, rerun_changed, jobs, shard, datasets)


def _run(p, path: Path, scale: str, trials: Optional[int], out: Path, device: str, run_fn: Optional[RunFn],
         seed: int, rerun_changed: bool, jobs: int, shard: Optional[Tuple[int, int]], datasets) -> Path:
    if scale == "phantom":
        paths.setup_environment(str(out / "data"))
        with file_lock(out / "data"):  # shards starting at once build each phantom once
            ensure_phantoms(sorted(datasets))

    ctx = Context(out, scale, p.scale(scale), datasets, str(resolve_device(device)), seed=seed)
    if run_fn is None and p.design == "classification":
        run_fn = run_classification
    if jobs < 1:
        raise ProtocolError(f"--jobs must be at least 1, got {jobs}")
    folder = run_sweep(p, scale, out, ctx, run_fn or run_one, trials, path.read_text(), rerun_changed, jobs,
                       pretrained_weights, shard)
    if shard is None:
        log.info("report: %s", write_report(folder))
    return folder


@contextlib.contextmanager
def shared_locks(folder: Optional[Path]) -> Iterator[None]:
    """File locks (locking.py) in `folder` for the duration, so that processes on other machines
    sharing it see them; a SUPREM_LOCK_DIR set by the user is kept. None: locks stay as they are."""
    if folder is None or os.environ.get(LOCK_DIR_VAR):
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[LOCK_DIR_VAR] = str(folder)
    try:
        yield
    finally:
        os.environ.pop(LOCK_DIR_VAR, None)


def report_folder(folder: Union[str, Path]) -> Path:
    """Write a results folder's report; a sharded sweep's CSVs are merged from its shards first (one
    line naming the missing or unfinished shards and runs, or a shard of another protocol version)."""
    folder = Path(folder)
    runs = merged_runs(folder)
    if runs is not None:
        collect(folder, runs)
    return write_report(folder)
