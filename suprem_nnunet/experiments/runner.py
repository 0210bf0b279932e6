"""Run a protocol's sweep, resumably, and collect its tidy rows.

Every (arm, setting, trial) run has its own folder `<out>/<protocol>/runs/<arm>/<setting>/trial_NN/`
with `result.json` written last (atomically): a rerun skips runs whose result reads back, reruns a
run whose result is missing or corrupt (one line logged), and so completes a killed sweep. Rows go
to `results.csv` (protocol, arm, setting, trial, case, class, dsc, nsd), learning curves to
`curves.csv`, run-level facts (seconds, pre-training compute) to `runs.csv`; a classification run's
rows (one per test case and sub-type: its score and whether the case is of that sub-type) go to
`scores.csv`. report.py draws every table and figure from those files only.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import __version__
from ..dataset.raw import atomic_write_bytes, atomic_write_json
from ..preprocessing.manifest import code_versions
from .data import DatasetInfo
from .execute import Context, RunSpec
from .protocol import Protocol, ProtocolError, Scale
from ..errors import InputError
from .shards import RESULT, SHARDS, assign, check_shards, shard_identity, write_manifest

log = logging.getLogger(__name__)
ROW_FIELDS = ("protocol", "arm", "setting", "trial", "case", "class", "dsc", "nsd")
SCORE_FIELDS = ("protocol", "arm", "setting", "trial", "case", "class", "truth", "score")
CURVE_FIELDS = ("protocol", "arm", "setting", "trial", "epoch", "seconds", "val_dsc_ema", "val_dsc")
RUN_FIELDS = ("protocol", "arm", "setting", "trial", "target", "train_seconds", "seconds", "pretrain_cases",
              "pretrain_seconds")
RunFn = Callable[[Context, RunSpec, Path], Dict]
PrepareFn = Callable[[Context, str, Optional[int]], object]


def setting_label(value: Optional[int]) -> str:
    return "all" if value is None else str(value)


def plan_runs(protocol: Protocol, scale: Scale, trials: int, datasets: Dict[int, DatasetInfo]) -> List[RunSpec]:
    """Every run of the sweep, trials outermost (a short run gives every arm and setting a trial first)."""
    runs: List[RunSpec] = []
    for trial in range(trials):
        for arm in scale.arms:
            base = RunSpec(protocol.name, arm.name, arm.init, arm.source, "", trial, scale.targets[0].dataset)
            if protocol.design == "ood":
                if arm.init == "direct" and trial > 0:
                    continue  # direct inference is deterministic: one run per dataset
                for t in scale.targets:
                    runs.append(replace(base, setting=datasets[t.dataset].short, target=t.dataset,
                                        num_train=scale.sweep[0] if scale.sweep else None))
            elif protocol.design == "pretrain_scale":
                if arm.init == "scratch":
                    runs.append(replace(base, setting="0", num_train=None))
                else:
                    for n in scale.sweep:
                        runs.append(replace(base, setting=str(n), pretrain_cases=n))
            else:
                for n in scale.sweep:
                    runs.append(replace(base, setting=setting_label(n), num_train=n))
    return runs


def run_key_fields(ctx: Context, scale: Scale, spec: RunSpec) -> Dict[str, str]:
    """Everything that shapes one run besides its folder, field by field: the run itself, the
    protocol's budget, caps, backbone and pre-training entry, the identity of the weights it starts
    from (zoo sha256 or our pre-training's cache key), the device, test-time mirroring, precision,
    the base seed, a digest of the target dataset, and the package versions."""
    return {"run": repr(spec), "budget": repr(scale.budget), "caps": repr(scale.caps), "backbone": scale.backbone,
            "pretraining": repr(scale.pretraining(spec.source)),
            "pretrained_weights": ctx.pretrained_identity(spec.source, spec.pretrain_cases),
            "device": ctx.device, "mirroring": str(ctx.mirroring), "precision": ctx.precision,
            "seed": str(ctx.seed), "target_data": ctx.dataset_digest(spec.target),
            "suprem_nnunet": __version__, "nnunetv2": code_versions()["nnunetv2"]}


def run_key(fields: Dict[str, str]) -> str:
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def key_difference(res: Dict, fields: Dict[str, str]) -> str:
    """Which key fields a stored result differs in (its own values first), for one-line messages."""
    old = res.get("key_fields")
    if not isinstance(old, dict):
        return "settings not recorded"
    diff = [f"{k} {old.get(k, '?')} -> {v}" if len(f"{old.get(k)}{v}") < 60 else k
            for k, v in fields.items() if old.get(k) != v]
    return ", ".join(diff) or "settings"


class KeyMismatch(ProtocolError):
    """A results folder holds runs made under other settings than the ones asked for."""


def _parse_result(path: Path) -> Dict:
    """A result file's record; ValueError (or UnicodeDecodeError) when it is not a complete one."""
    res = json.loads(path.read_text())
    if not isinstance(res, dict) or not isinstance(res.get("rows"), list):
        raise InputError("no 'rows' list")
    for r in res["rows"]:
        if not ({"case", "class", "dsc", "nsd"} <= set(r) or {"case", "class", "truth", "score"} <= set(r)):
            raise InputError("a row lacks case/class/dsc/nsd (or case/class/truth/score)")
    return res


def read_result(path: Path, key_fields: Optional[Dict[str, str]] = None) -> Optional[Dict]:
    """The run's result, or None when it is missing, unreadable or (given `key_fields`) made under
    other settings; the last two are logged in one line."""
    if not path.is_file():
        return None
    try:
        res = _parse_result(path)
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("%s: corrupt result (%s); running it again", path, str(e).splitlines()[0])
        return None
    if key_fields is not None and res.get("key") != run_key(key_fields):
        log.warning("%s: made with other settings (%s); running it again", path, key_difference(res, key_fields))
        return None
    return res


def _stored(path: Path) -> Optional[Dict]:
    """A complete result's record, None for a missing or corrupt one (those simply run again)."""
    try:
        return _parse_result(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def check_keys(folder: Path, runs: Sequence[RunSpec], keys: Dict[RunSpec, Dict[str, str]],
               rerun_changed: bool) -> List[RunSpec]:
    """The runs whose stored result was made under other settings. Unless `rerun_changed`, stops
    before anything runs with one line naming the first such run, how many there are and the fields
    that differ: a table never mixes settings, and nothing is overwritten without being asked."""
    changed = []
    for spec in runs:
        res = _stored(folder / "runs" / spec.folder / RESULT)
        if res is not None and res.get("key") != run_key(keys[spec]):
            changed.append(spec)
    if changed and not rerun_changed:
        first = changed[0]
        res = _stored(folder / "runs" / first.folder / RESULT) or {}
        raise KeyMismatch(f"{folder / 'runs' / first.folder / RESULT}: made with other settings "
                          f"({key_difference(res, keys[first])}); {len(changed)} of {len(runs)} runs differ. "
                          f"Use another --out, or --rerun-changed to run them again and replace them")
    return changed


def _execute(name: str, setting_name: str, folder: Path, ctx: Context, run_fn: RunFn, spec: RunSpec,
             key_fields: Dict[str, str], i: int, total: int) -> None:
    """One run from nothing: a fresh folder, `run_fn`, then result.json (written last, atomically)."""
    run_dir = folder / "runs" / spec.folder
    if run_dir.exists():  # an interrupted or corrupt run starts again from nothing
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    log.info("%s: run %d/%d: %s (%s), %s=%s, trial %d", name, i + 1, total, spec.arm, spec.init, setting_name,
             spec.setting, spec.trial)
    t = time.time()
    record = run_fn(ctx, spec, run_dir)
    record = {"spec": spec.__dict__, "key": run_key(key_fields), "key_fields": key_fields, **record}
    atomic_write_json(run_dir / RESULT, json.loads(json.dumps(record, default=float)))
    log.info("%s: run %d/%d done in %.0f s", name, i + 1, total, time.time() - t)


def _worker_init(threads: int, level: int) -> None:
    """A sweep worker: `threads` torch threads (one per core between the workers), no DA workers,
    and the parent's log level for this package (its run lines show as they happen)."""
    import os

    import torch

    os.environ["nnUNet_n_proc_DA"] = "0"
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("suprem_nnunet").setLevel(level)


def _run_parallel(protocol: Protocol, folder: Path, ctx: Context, run_fn: RunFn, pending, total: int,
                  keys: Dict[RunSpec, Dict[str, str]], jobs: int, prepare_fn: Optional[PrepareFn]) -> None:
    """`pending` runs in `jobs` spawned worker processes, one torch thread each. The pre-trainings they
    start from are made first, here, one after the other (each is cached for all later runs); the
    target's preprocessing is guarded by a file lock in finetune.prepare_target. Every run writes its
    own folder, so the results equal a sequential sweep's with the same seeds."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if prepare_fn is not None:
        for key in dict.fromkeys((spec.source, spec.pretrain_cases) for _, spec in pending):
            prepare_fn(ctx, *key)
    workers = min(jobs, len(pending))
    log.info("%s: %d runs in %d parallel processes", protocol.name, len(pending), workers)
    level = logging.getLogger("suprem_nnunet").getEffectiveLevel()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(1, level)) as pool:
        futures = [pool.submit(_execute, protocol.name, protocol.setting_name, folder, ctx, run_fn, spec,
                               keys[spec], i, total) for i, spec in pending]
        for f in futures:
            f.result()  # the first failure stops the sweep (finished runs keep their results)


def run_sweep(protocol: Protocol, scale_name: str, out: Path, ctx: Context, run_fn: RunFn,
              trials: Optional[int] = None, protocol_text: Optional[str] = None,
              rerun_changed: bool = False, jobs: int = 1, prepare_fn: Optional[PrepareFn] = None,
              shard: Optional[Tuple[int, int]] = None) -> Path:
    """Run (or resume) every run of `protocol` at `scale_name` into `out/<protocol>/`; writes the CSVs
    and returns that folder. `run_fn(ctx, spec, folder)` does one run and returns its record. Runs
    already done under other settings stop the sweep before it starts (see check_keys) unless
    `rerun_changed`, which runs them again (one line logged each). `jobs` > 1 runs that many at
    once in worker processes (`prepare_fn(ctx, source, pretrain_cases)` makes each pre-training
    first). `shard` (K, N): only shard K of N's runs (see shards.py), with its manifest and without
    the CSVs, which `shards.merged_runs` + `collect` write once every shard has finished."""
    scale = protocol.scale(scale_name)
    n_trials = trials or scale.trials
    folder = Path(out) / protocol.name
    runs = plan_runs(protocol, scale, n_trials, ctx.datasets)
    mine = assign(runs, *shard) if shard else list(enumerate(runs))
    identity = shard_identity(protocol, scale_name, n_trials, ctx, protocol_text)
    if shard:
        check_shards(folder, identity, *shard)  # before anything is written
    keys = {spec: run_key_fields(ctx, scale, spec) for _, spec in mine}
    if folder.is_dir():
        check_keys(folder, [spec for _, spec in mine], keys, rerun_changed)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"protocol": protocol.name, "scale": scale_name, "trials": n_trials, "seed": ctx.seed,
            "device": ctx.device,
            "datasets": {str(k): v.name for k, v in ctx.datasets.items()}, "file": protocol.file}
    atomic_write_json(folder / "experiment.json", meta)
    if protocol_text is not None:
        atomic_write_bytes(folder / "protocol.json", protocol_text.encode())
    t0 = time.time()
    pending = []
    for i, spec in mine:
        run_dir = folder / "runs" / spec.folder
        if read_result(run_dir / RESULT, keys[spec]) is None:
            pending.append((i, spec))
    done = len(mine) - len(pending)
    if shard:
        write_manifest(folder, identity, *shard, mine, len(runs), complete=False)
        log.info("%s: shard %d/%d: %d of the %d runs", protocol.name, *shard, len(mine), len(runs))
    if jobs > 1 and len(pending) > 1:
        _run_parallel(protocol, folder, ctx, run_fn, pending, len(runs), keys, jobs, prepare_fn)
    else:
        if shard and prepare_fn is not None:  # runs of other shards may need them too: made once, under a lock
            for source, n in dict.fromkeys((spec.source, spec.pretrain_cases) for _, spec in pending):
                prepare_fn(ctx, source, n)
        for i, spec in pending:
            _execute(protocol.name, protocol.setting_name, folder, ctx, run_fn, spec, keys[spec], i, len(runs))
    if done:
        log.info("%s: %d of %d runs were already done", protocol.name, done, len(mine))
    if shard:
        write_manifest(folder, identity, *shard, mine, len(runs), complete=True)
        log.info("%s: shard %d/%d done (%d runs in %.0f s); once every shard is: suprem_experiment report %s",
                 protocol.name, *shard, len(mine), time.time() - t0, folder)
        return folder
    collect(folder, runs)
    shutil.rmtree(folder / SHARDS, ignore_errors=True)  # a whole sweep supersedes the shards of an earlier one
    log.info("%s: %d runs in %.0f s -> %s", protocol.name, len(runs), time.time() - t0, folder)
    return folder


def _csv(rows: Sequence[Dict], fields: Sequence[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return buf.getvalue().encode()


def collect(folder: Path, runs: Sequence[RunSpec]) -> None:
    """results.csv, curves.csv, runs.csv (and scores.csv) from the result files of `runs` (nothing else)."""
    rows, curves, infos, scores = [], [], [], []
    for spec in runs:
        res = read_result(folder / "runs" / spec.folder / RESULT)
        if res is None:
            raise ProtocolError(f"{folder / 'runs' / spec.folder / RESULT}: missing; run the protocol again")
        key = {"protocol": spec.protocol, "arm": spec.arm, "setting": spec.setting, "trial": spec.trial}
        rows += [{**key, **r} for r in res["rows"] if "dsc" in r]
        scores += [{**key, **r} for r in res["rows"] if "score" in r]
        curves += [{**key, **c} for c in res.get("curve", [])]
        pre = (res.get("pretraining") or {}) if spec.init != "scratch" else {}  # scratch: only its plans
        infos.append({**key, "target": res.get("target", ""), "train_seconds": res.get("train_seconds"),
                      "seconds": res.get("seconds"), "pretrain_cases": pre.get("cases"),
                      "pretrain_seconds": pre.get("seconds")})
    atomic_write_bytes(folder / "results.csv", _csv(rows, ROW_FIELDS))
    atomic_write_bytes(folder / "curves.csv", _csv(curves, CURVE_FIELDS))
    atomic_write_bytes(folder / "runs.csv", _csv(infos, RUN_FIELDS))
    if scores:
        atomic_write_bytes(folder / "scores.csv", _csv(scores, SCORE_FIELDS))
