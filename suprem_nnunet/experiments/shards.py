"""Sharded sweeps: `suprem_experiment run … --shard K/N` runs part K of a protocol's runs, so N jobs
(a SLURM array, one process per node) share one results folder; `suprem_experiment report` merges them.

Assignment: the runs sorted by their folder (`<arm>/<setting>/trial_NN`, the run's cache key), shard
K taking every N-th from the K-th (`sharding.take_part`): the same on every node, whatever order the
nodes start in. Each shard writes only its own run folders and `shards/shard-K-of-N.json`, its
manifest: the sweep's identity (protocol name, a hash of the protocol file = its version, scale,
trials, seed, device), K, N, its runs with their index in the sweep, and whether it has finished.
A pre-training that runs of several shards start from is made under a lock on its folder
(execute.pretrained_weights): the first shard makes it, the others wait and read it.

`merge_shards` writes the sweep's CSVs (in the unsharded order, so they equal an unsharded run's)
only when every shard of one identity has finished and every run has its result; otherwise it stops
with one line naming the missing shards or runs, or the shard made from another protocol version.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..dataset.raw import atomic_write_json
from ..sharding import take_part
from .execute import Context, RunSpec
from .protocol import Protocol, ProtocolError

log = logging.getLogger(__name__)
SHARDS = "shards"
RESULT = "result.json"  # each run's record, written last (runner.py)


class ShardMismatch(ProtocolError):
    """A results folder holds shards of another sweep (protocol version, scale, trials, seed, device or N)."""


def shard_identity(protocol: Protocol, scale_name: str, trials: int, ctx: Context,
                   protocol_text: Optional[str] = None) -> Dict[str, object]:
    """What every shard of one sweep shares; `version` hashes the protocol file's text (else the loaded protocol)."""
    text = protocol_text if protocol_text is not None else repr(protocol)
    return {"protocol": protocol.name, "version": hashlib.sha256(text.encode()).hexdigest()[:16],
            "scale": scale_name, "trials": trials, "seed": ctx.seed, "device": ctx.device}


def assign(runs: Sequence[RunSpec], shard: int, num_shards: int) -> List[Tuple[int, RunSpec]]:
    """(index in `runs`, run) of shard `shard` of `num_shards`: every N-th run by sorted run folder."""
    order = {str(spec.folder): i for i, spec in enumerate(runs)}
    return sorted((order[f], runs[order[f]]) for f in take_part(order, num_shards, shard))


def manifest_path(folder: Path, shard: int, num_shards: int) -> Path:
    return folder / SHARDS / f"shard-{shard}-of-{num_shards}.json"


def read_manifests(folder: Path) -> Dict[Path, Dict]:
    """{file: manifest} of the shards in a results folder; one line naming an unreadable manifest."""
    out = {}
    for f in sorted((folder / SHARDS).glob("shard-*-of-*.json")):
        try:
            m = json.loads(f.read_text())
            if not isinstance(m, dict) or not {"identity", "shard", "num_shards", "runs", "complete"} <= set(m):
                raise ValueError("not a shard manifest")
        except (ValueError, UnicodeDecodeError) as e:
            raise ProtocolError(f"{f}: unreadable shard manifest ({str(e).splitlines()[0]}); delete it and "
                                f"run that shard again") from None
        out[f] = m
    return out


def _difference(a: Dict, b: Dict) -> str:
    return ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def check_shards(folder: Path, identity: Dict, shard: int, num_shards: int) -> None:
    """Before a shard runs: ShardMismatch (one line) when the folder holds a shard of another sweep or
    another N (this shard's own earlier manifest excepted: it is replaced)."""
    own = manifest_path(folder, shard, num_shards)
    for f, m in read_manifests(folder).items():
        if f == own:
            continue
        if m["identity"] != identity:
            raise ShardMismatch(f"{f}: a shard of another sweep ({_difference(m['identity'], identity)}); use "
                                f"another --out, or delete {folder / SHARDS} to start the sharded sweep over")
        if m["num_shards"] != num_shards:
            raise ShardMismatch(f"{f}: a shard of {m['num_shards']}, not {num_shards}; run every shard with "
                                f"--shard K/{m['num_shards']}, or delete {folder / SHARDS} to start over")


def write_manifest(folder: Path, identity: Dict, shard: int, num_shards: int, mine: Sequence[Tuple[int, RunSpec]],
                   total: int, complete: bool) -> Path:
    f = manifest_path(folder, shard, num_shards)
    f.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(f, {"identity": identity, "shard": shard, "num_shards": num_shards, "total_runs": total,
                          "runs": [{"index": i, "spec": dict(spec.__dict__)} for i, spec in mine],
                          "complete": complete})
    return f


def merged_runs(folder: Path) -> Optional[List[RunSpec]]:
    """Every run of a finished sharded sweep in the unsharded order; None when the folder has no
    shards. ShardMismatch for shards of two sweeps (or two N); ProtocolError naming the shards that
    are missing or unfinished and the runs without a result."""
    manifests = read_manifests(folder)
    if not manifests:
        return None
    (f0, m0), *rest = manifests.items()
    for f, m in rest:
        if m["identity"] != m0["identity"]:
            raise ShardMismatch(f"{f}: a shard of another sweep than {f0.name} ({_difference(m['identity'], m0['identity'])}); "
                                f"remove the shards of the other protocol version and run them again")
        if m["num_shards"] != m0["num_shards"]:
            raise ShardMismatch(f"{f}: a shard of {m['num_shards']}, but {f0.name} is one of {m0['num_shards']}")
    n = m0["num_shards"]
    by_k = {m["shard"]: m for m in manifests.values()}
    missing = [k for k in range(n) if k not in by_k]
    unfinished = [k for k in range(n) if k in by_k and not by_k[k]["complete"]]
    runs: Dict[int, RunSpec] = {}
    for m in by_k.values():
        for r in m["runs"]:
            runs[int(r["index"])] = RunSpec(**r["spec"])
    no_result = [s for _, s in sorted(runs.items()) if not (folder / "runs" / s.folder / RESULT).is_file()]
    if missing or unfinished or no_result:
        parts = []
        if missing:
            parts.append(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} not started")
        if unfinished:
            parts.append(f"shard(s) {', '.join(f'{k}/{n}' for k in unfinished)} not finished")
        if no_result:
            named = ", ".join(str(s.folder) for s in no_result[:3]) + (", ..." if len(no_result) > 3 else "")
            parts.append(f"{len(no_result)} of the started shards' runs have no result ({named})")
        raise ProtocolError(f"{folder}: sharded sweep incomplete: {'; '.join(parts)}; no report written "
                            f"(run the missing shards, then report again)")
    total = m0["total_runs"]
    if sorted(runs) != list(range(total)):
        raise ProtocolError(f"{folder / SHARDS}: the shards list {len(runs)} of the sweep's {total} runs")
    return [runs[i] for i in range(total)]
