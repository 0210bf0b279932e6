"""suprem_experiment: run the paper's experiments as protocols (Tables 2-4, Figs 1, 2a, 2b, 3, 9) and report them."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from .common import parser, positive_int, run, seed_int
from ..errors import MissingFileError
from .common import shard_spec


def build_parser():
    from ..experiments.protocol import protocol_names

    p = parser("suprem_experiment", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) a protocol, then write its report")
    r.add_argument("protocol", help=f"shipped protocol ({', '.join(protocol_names())}), 'all' (every shipped "
                                    "protocol, one after the other, sharing --out) or a protocol .json file")
    r.add_argument("--scale", default="phantom", choices=["phantom", "full"],
                   help="phantom: builds its own phantom data, runs on CPU; full: the protocol's dataset ids "
                        "and zoo models at the paper's sizes")
    r.add_argument("--trials", type=positive_int, help="trials per arm and setting (default: the protocol's)")
    r.add_argument("--out", default="suprem_experiments",
                   help="experiments folder: <out>/<protocol>/ results, <out>/pretrain cached pre-trainings, "
                        "<out>/data phantom data")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    r.add_argument("--seed", type=seed_int, default=0,
                   help="base seed: pre-trainings use it, trial k of every arm uses seed + k")
    r.add_argument("--jobs", type=positive_int, default=1,
                   help="runs at once, each in its own process with one torch thread (e.g. the number of cores)")
    r.add_argument("--rerun-changed", action="store_true",
                   help="runs in --out made with other settings (device, seed, budget, data, weights, "
                        "versions) are run again and replaced; without it the command stops and names them")
    r.add_argument("--shard", type=shard_spec, metavar="K/N",
                   help="run only shard K (0 .. N-1) of N of the runs (e.g. one per node or array task, all with "
                        "the same --out); no report: 'report' merges the shards once every one has finished")
    rep = sub.add_parser("report", help="regenerate report.md and figures from a results folder")
    rep.add_argument("dir", help="a protocol results folder (<out>/<protocol>) or an experiments folder; the "
                                 "shards of a sharded sweep are merged first (all of them must have finished)")
    sub.add_parser("list", help="list the shipped protocols")
    return p


def _is_results(folder: Path) -> bool:
    """A protocol results folder: its CSVs, or the shards of a sharded sweep."""
    return (folder / "results.csv").is_file() or (folder / "shards").is_dir()


def _main(args) -> int:
    from ..experiments.api import report_folder
    from ..experiments.protocol import load_protocol, protocol_names

    if args.command == "list":
        for name in protocol_names():
            p = load_protocol(name)
            print(f"{name:8s} {p.paper:16s} {p.title}")
        return 0
    if args.command == "report":
        d = Path(args.dir)
        folders = [d] if _is_results(d) else sorted(f for f in d.iterdir() if _is_results(f)) if d.is_dir() else []
        if not folders:
            raise MissingFileError(f"{d}: no results.csv or shards/ here or in a sub-folder "
                                   f"(run suprem_experiment run first)")
        for f in folders:
            print(f"report: {report_folder(f)}")
        return 0
    from ..experiments.api import run_protocol

    names = protocol_names() if args.protocol == "all" else [args.protocol]
    for name in names:
        folder = run_protocol(name, args.scale, args.trials, args.out, args.device, seed=args.seed,
                              rerun_changed=args.rerun_changed, jobs=args.jobs, shard=args.shard)
        if args.shard:
            print(f"shard {args.shard[0]}/{args.shard[1]} of {name} done: {folder} "
                  f"(suprem_experiment report {folder} once every shard is)")
            continue
        if len(names) == 1:
            print((folder / "report.md").read_text())
        print(f"report: {folder / 'report.md'}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
