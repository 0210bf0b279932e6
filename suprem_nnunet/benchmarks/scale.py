"""Scale benchmark (`python -m suprem_nnunet.benchmarks scale --cases 100 500`).

Pre-training data at AbdomenAtlas scale (9,262 CTs) must not need RAM proportional to the dataset.
For each N this synthesises N small phantom cases, fingerprints, plans and preprocesses them with
`plan_and_preprocess` (what `suprem_plan_and_preprocess` runs), then builds nnU-Net's training
dataset and loader on the preprocessed folder and draws a few batches. Each N runs in a fresh
process, so that its peak memory is its own; reported per N:

* peak RSS of that process (`ru_maxrss`, RUSAGE_SELF) and of its largest finished child (the
  worker pools; RUSAGE_CHILDREN: on Linux a spawned worker inherits the parent's peak RSS at the
  fork, before it execs Python, so this is at least the parent's peak at that time), and the peak
  memory of the whole process tree at once, sampled from /proc every 0.5 s (Linux; the sum of the
  processes' PSS, so shared library pages count once; a spike shorter than 0.5 s can be missed);
* wall time per case of synthesis and of fingerprint + plan + preprocess, and per batch drawn;
* the memory the training dataset object adds (cases are opened lazily, per batch).

Then the ratio of the largest N's peaks to the smallest's: 1.0 means memory does not grow with
the number of cases. `--nnunet-fingerprint` runs nnU-Net's unbounded fingerprint settings
(every case, 10^8 foreground voxels) instead of ours (`planning/fingerprint.py`), for comparison.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence
from ..planning.fingerprint import SupremFingerprintExtractor
from ..planning.planner import PlanningCaps, plan_and_preprocess, plans_name_for
from ..synth.dataset import make_phantom_dataset
from ..dataset.raw import atomic_write_json
from ..errors import InputError

log = logging.getLogger(__name__)

SCALE_DATASET_ID = 970
CLASSES = ("liver", "spleen", "kidney_left", "kidney_right", "aorta", "stomach", "pancreas")


@dataclass(frozen=True)
class ScaleConfig:
    out: Path = Path("suprem_scale_bench")
    shape: int = 40  # voxels per axis of each phantom
    spacing: float = 8.0  # mm
    num_processes: int = 2
    batches: int = 5  # training batches drawn from the loader (0: skip the loader)
    verify: bool = True  # nnU-Net's dataset integrity check, as suprem_plan_and_preprocess runs it
    nnunet_fingerprint: bool = False  # nnU-Net's fingerprint settings instead of ours
    keep: bool = False  # keep the data of each N


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _descendants(root: int) -> List[int]:
    """`root` and every process below it, from the parent ids in /proc/*/stat."""
    children: Dict[int, List[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _proc_kib(path: str, key: str) -> Optional[int]:
    """The KiB value of line `key:` of a /proc file, or None (no such file, process or line)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _memory_kib(pid: int) -> int:
    """Proportional set size of `pid` in KiB (shared library pages split between their users, so a sum
    over processes counts them once), or its VmRSS where smaps_rollup is missing; 0 once it exited."""
    pss = _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss")
    return pss if pss is not None else _proc_kib(f"/proc/{pid}/status", "VmRSS") or 0


def _tree_rss_kib(root: int) -> int:
    """Memory (KiB) of process `root` and all its descendants together: the sum of their PSS."""
    return sum(_memory_kib(p) for p in _descendants(root))


class TreeRSSSampler:
    """Peak memory (summed PSS) of this process tree, sampled every `interval` s in a thread (Linux only)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak_kib = interval, 0
        self.available = os.path.isdir("/proc/self")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(os.getpid()))
            self._stop.wait(self.interval)

    def reset(self) -> int:
        """The peak since the last reset (KiB); starts again from now."""
        peak, self.peak_kib = self.peak_kib, _tree_rss_kib(os.getpid()) if self.available else 0
        return max(peak, self.peak_kib)

    def __enter__(self) -> "TreeRSSSampler":
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()


def draw_batches(preprocessed: Path, plans_identifier: str, configuration: str, batches: int) -> Dict:
    """Build nnU-Net's training dataset and data loader on a preprocessed dataset and draw `batches`
    batches; the dataset's memory and the time per batch."""
    import numpy as np
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads((preprocessed / f"{plans_identifier}.json").read_text())
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    cm = PlansManager(plans).get_configuration(configuration)
    folder = preprocessed / cm.data_identifier
    before = _tree_rss_kib(os.getpid())
    dataset = nnUNetDatasetBlosc2(str(folder))  # the format nnU-Net 2.8.1 writes
    dataset_kib = _tree_rss_kib(os.getpid()) - before
    loader = nnUNetDataLoader(dataset, cm.batch_size, cm.patch_size, cm.patch_size,
                              PlansManager(plans).get_label_manager(dataset_json), oversample_foreground_percent=0.33)
    np.random.seed(0)
    t = time.perf_counter()
    shapes = None
    for _ in range(batches):
        batch = next(loader)
        shapes = list(batch["data"].shape)
    return {"cases_in_dataset": len(dataset.identifiers), "dataset_object_mib": _mib(max(dataset_kib, 0)),
            "seconds_per_batch": round((time.perf_counter() - t) / max(batches, 1), 4), "batch_shape": shapes}


def run_one(n: int, cfg: ScaleConfig) -> Dict:
    """Synthesise, plan + preprocess and load `n` cases in this process (the nnU-Net folders must be
    set in the environment before nnunetv2 is imported). One result row."""

    if cfg.nnunet_fingerprint:  # nnU-Net's own settings: every case, 10^8 foreground voxels
        SupremFingerprintExtractor.max_cases = 10 ** 9
        SupremFingerprintExtractor.max_foreground_voxels = 10 ** 8
    row: Dict = {"cases": n, "fingerprint": "nnunet" if cfg.nnunet_fingerprint else "suprem",
                 "fingerprint_max_cases": SupremFingerprintExtractor.max_cases,
                 "fingerprint_max_foreground_voxels": SupremFingerprintExtractor.max_foreground_voxels}
    row["start_tree_mib"] = _mib(_tree_rss_kib(os.getpid()))  # after the imports, before any case
    with TreeRSSSampler() as sampler:
        t = time.perf_counter()
        folder = make_phantom_dataset(SCALE_DATASET_ID, "Scale", CLASSES, n, 0, (cfg.shape,) * 3,
                                      (cfg.spacing,) * 3, seed=1, progress=False)
        row["synth_s_per_case"] = round((time.perf_counter() - t) / n, 4)
        row["synth_tree_peak_mib"] = _mib(sampler.reset())
        t = time.perf_counter()
        plan_and_preprocess(folder.name, "nnunet", ("3d_fullres",), PlanningCaps((32, 32, 32), 8, 32, 2),
                            num_processes=cfg.num_processes, verify=cfg.verify, clean=True)
        row["plan_preprocess_s_per_case"] = round((time.perf_counter() - t) / n, 4)
        row["plan_preprocess_tree_peak_mib"] = _mib(sampler.reset())
        preprocessed = Path(os.environ["nnUNet_preprocessed"]) / folder.name
        fp = json.loads((preprocessed / "dataset_fingerprint.json").read_text())
        row["fingerprinted_cases"] = len(fp["spacings"])
        row["preprocessed_cases"] = len(list(preprocessed.glob("*/*.pkl")))
        if cfg.batches:
            row.update(draw_batches(preprocessed, plans_name_for("nnunet"), "3d_fullres", cfg.batches))
            row["loader_tree_peak_mib"] = _mib(sampler.reset())
    row["peak_rss_self_mib"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    row["peak_rss_largest_child_mib"] = _mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    row["peak_tree_mib"] = max(row[k] for k in row if k.endswith("tree_peak_mib"))
    return row


def run_benchmark(cases: Sequence[int], cfg: ScaleConfig) -> Dict:
    """One fresh process per N (peak RSS is per process); the rows and the growth ratios."""
    if not cases or any(n < 1 for n in cases):
        raise InputError(f"--cases needs numbers of cases >= 1, got {list(cases)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in cases:
        work = Path(tempfile.mkdtemp(prefix=f"n{n}_", dir=cfg.out))
        env = dict(os.environ)
        for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            env[var] = str(work / var)
            (work / var).mkdir()
        result = work / "row.json"
        cmd = [sys.executable, "-m", "suprem_nnunet.benchmarks.scale", "--one", str(n), "--row", str(result),
               "--config", json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()})]
        log.info("scale: %d cases in %s", n, work)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scale run with {n} cases failed ({proc.returncode}): {proc.stderr[-2000:]}")
        rows.append(json.loads(result.read_text()))
        if not cfg.keep:
            shutil.rmtree(work, ignore_errors=True)
    first, last = rows[0], rows[-1]
    growth = {k: round(last[k] / first[k], 3) for k in ("peak_rss_self_mib", "peak_rss_largest_child_mib",
                                                        "peak_tree_mib") if first.get(k)}
    return {"config": {k: str(v) for k, v in asdict(cfg).items()}, "rows": rows, "growth": growth,
            "cases_ratio": round(last["cases"] / first["cases"], 3)}


def format_report(report: Dict) -> List[str]:
    lines = [f"{'cases':>6} {'fingerprinted':>13} {'synth s/case':>12} {'plan+prep s/case':>16} "
             f"{'s/batch':>8} {'peak RSS self':>13} {'largest child':>13} {'tree peak':>10}  (MiB)"]
    for r in report["rows"]:
        lines.append(f"{r['cases']:>6} {r['fingerprinted_cases']:>13} {r['synth_s_per_case']:>12.3f} "
                     f"{r['plan_preprocess_s_per_case']:>16.3f} {r.get('seconds_per_batch', float('nan')):>8.3f} "
                     f"{r['peak_rss_self_mib']:>13.1f} {r['peak_rss_largest_child_mib']:>13.1f} "
                     f"{r['peak_tree_mib']:>10.1f}")
    rows = report["rows"]
    if len(rows) > 1:
        g = report["growth"]
        grows = any(v > 1.2 for v in g.values())
        lines.append(f"{rows[-1]['cases']} vs {rows[0]['cases']} cases (x{report['cases_ratio']}): peak RSS x"
                     f"{g.get('peak_rss_self_mib')} (process), x{g.get('peak_rss_largest_child_mib')} (largest child), "
                     f"x{g.get('peak_tree_mib')} (process tree) -> peak RSS "
                     + ("GROWS with the number of cases" if grows else "does not grow with the number of cases"))
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ScaleConfig()
    p.add_argument("--cases", type=int, nargs="+", default=[100, 500], help="numbers of cases, e.g. 100 500")
    p.add_argument("--out", default=str(d.out), help="work folder (one temporary sub-folder per N)")
    p.add_argument("--shape", type=int, default=d.shape, help="voxels per axis of each phantom")
    p.add_argument("--spacing", type=float, default=d.spacing, help="mm per voxel")
    p.add_argument("-np", "--num-processes", type=int, default=d.num_processes)
    p.add_argument("--batches", type=int, default=d.batches, help="training batches to draw (0: no loader)")
    p.add_argument("--no-verify", action="store_true", help="skip nnU-Net's dataset integrity check")
    p.add_argument("--nnunet-fingerprint", action="store_true",
                   help="nnU-Net's fingerprint settings (every case, 1e8 voxels) instead of ours, for comparison")
    p.add_argument("--keep", action="store_true", help="keep each N's data")
    p.add_argument("--json", default=None)


def run_cli(args) -> List[Dict]:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = ScaleConfig(Path(args.out), args.shape, args.spacing, args.num_processes, args.batches,
                      not args.no_verify, args.nnunet_fingerprint, args.keep)
    try:
        report = run_benchmark(args.cases, cfg)
    except ValueError as e:
        raise SystemExit(f"scale: {e}") from None
    for line in format_report(report):
        print(line, flush=True)
    return [report]


def _child(argv: Sequence[str]) -> int:
    """`--one N --row FILE --config JSON`: one N in this (fresh) process, the row written to FILE."""
    p = argparse.ArgumentParser()
    p.add_argument("--one", type=int, required=True)
    p.add_argument("--row", required=True)
    p.add_argument("--config", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    c = json.loads(a.config)
    cfg = ScaleConfig(**{**c, "out": Path(c["out"])})
    row = run_one(a.one, cfg)

    atomic_write_json(a.row, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
