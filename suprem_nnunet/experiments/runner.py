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
from typing import Callable, Dict, List, Optional, Sequence

from ..dataset.raw import atomic_write_bytes, atomic_write_json
from .data import DatasetInfo
from .execute import Context, RunSpec
from .protocol import Protocol, ProtocolError, Scale

log = logging.getLogger(__name__)
RESULT = "result.json"
ROW_FIELDS = ("protocol", "arm", "setting", "trial", "case", "class", "dsc", "nsd")
SCORE_FIELDS = ("protocol", "arm", "setting", "trial", "case", "class", "truth", "score")
CURVE_FIELDS = ("protocol", "arm", "setting", "trial", "epoch", "seconds", "val_dsc_ema", "val_dsc")
RUN_FIELDS = ("protocol", "arm", "setting", "trial", "target", "train_seconds", "seconds", "pretrain_cases",
              "pretrain_seconds")
RunFn = Callable[[Context, RunSpec, Path], Dict]


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


def run_key(scale: Scale, spec: RunSpec) -> str:
    """Hash of everything that shapes one run besides its folder: budget, caps, backbone and the
    pre-training it starts from. A result made under other settings is run again."""
    what = (spec, scale.budget, scale.caps, scale.backbone, scale.pretraining(spec.source))
    return hashlib.sha1(repr(what).encode()).hexdigest()[:12]


def read_result(path: Path, key: Optional[str] = None) -> Optional[Dict]:
    """The run's result, or None when it is missing, unreadable or (given `key`) made under other
    settings; the last two are logged in one line."""
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
        if not isinstance(res, dict) or not isinstance(res.get("rows"), list):
            raise ValueError("no 'rows' list")
        for r in res["rows"]:
            if not ({"case", "class", "dsc", "nsd"} <= set(r) or {"case", "class", "truth", "score"} <= set(r)):
                raise ValueError("a row lacks case/class/dsc/nsd (or case/class/truth/score)")
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("%s: corrupt result (%s); running it again", path, str(e).splitlines()[0])
        return None
    if key is not None and res.get("key") != key:
        log.warning("%s: made with other protocol settings (budget, caps, backbone or pre-training); "
                    "running it again", path)
        return None
    return res


def run_sweep(protocol: Protocol, scale_name: str, out: Path, ctx: Context, run_fn: RunFn,
              trials: Optional[int] = None, protocol_text: Optional[str] = None) -> Path:
    """Run (or resume) every run of `protocol` at `scale_name` into `out/<protocol>/`; writes the CSVs
    and returns that folder. `run_fn(ctx, spec, folder)` does one run and returns its record."""
    scale = protocol.scale(scale_name)
    n_trials = trials or scale.trials
    folder = Path(out) / protocol.name
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"protocol": protocol.name, "scale": scale_name, "trials": n_trials,
            "datasets": {str(k): v.name for k, v in ctx.datasets.items()}, "file": protocol.file}
    atomic_write_json(folder / "experiment.json", meta)
    if protocol_text is not None:
        atomic_write_bytes(folder / "protocol.json", protocol_text.encode())
    runs = plan_runs(protocol, scale, n_trials, ctx.datasets)
    done = 0
    t0 = time.time()
    for i, spec in enumerate(runs):
        run_dir = folder / "runs" / spec.folder
        key = run_key(scale, spec)
        if read_result(run_dir / RESULT, key) is not None:
            done += 1
            continue
        if run_dir.exists():  # an interrupted or corrupt run starts again from nothing
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        log.info("%s: run %d/%d: %s (%s), %s=%s, trial %d", protocol.name, i + 1, len(runs), spec.arm, spec.init,
                 protocol.setting_name, spec.setting, spec.trial)
        t = time.time()
        record = run_fn(ctx, spec, run_dir)
        record = {"spec": spec.__dict__, "key": key, **record}
        atomic_write_json(run_dir / RESULT, json.loads(json.dumps(record, default=float)))
        log.info("%s: run %d/%d done in %.0f s", protocol.name, i + 1, len(runs), time.time() - t)
    if done:
        log.info("%s: %d of %d runs were already done", protocol.name, done, len(runs))
    collect(folder, runs)
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
