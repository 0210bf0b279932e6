"""suprem_convert: convert a public dataset, list the sources, or merge converted datasets.

    suprem_convert SOURCE INPUT_DIR [-d ID] [--name NAME] [-np N] [--skip-bad] [--groups G] [--images DIR]
    suprem_convert --list
    suprem_convert merge ID1 ID2 ... -d ID [--name NAME] [-np N]
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .common import parser, run


def convert_parser() -> argparse.ArgumentParser:
    p = parser("suprem_convert", "Convert a public CT dataset to the unified nnU-Net raw format "
               "('suprem_convert merge -h' for merging).")
    p.add_argument("source", nargs="?", help="source dataset key (see --list)")
    p.add_argument("input_dir", nargs="?", help="the source's download folder")
    p.add_argument("-d", "--dataset-id", type=int, help="output dataset id (default: per source)")
    p.add_argument("--name", help="output dataset name (default: per source)")
    p.add_argument("-np", "--num-workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--skip-bad", action="store_true", help="skip bad cases (listed in the report) instead of stopping")
    p.add_argument("--groups", help="TotalSegmentator: comma-separated groups (organs,vertebrae,cardiac,muscles,ribs)")
    p.add_argument("--images", help="DAP Atlas: folder holding the AutoPET PETCT_* tree (default: INPUT_DIR)")
    p.add_argument("--list", action="store_true", help="list every source with its classes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def merge_parser() -> argparse.ArgumentParser:
    p = parser("suprem_convert merge", "Merge converted datasets into one pre-training dataset, removing "
               "known duplicates.")
    p.add_argument("datasets", nargs="+", help="dataset ids or names to merge")
    p.add_argument("-d", "--dataset-id", type=int, required=True, help="output dataset id")
    p.add_argument("--name", default="Merged", help="output dataset name")
    p.add_argument("-np", "--num-workers", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    return p


def list_sources() -> str:
    from dataset_conversion.registry import SOURCES, classes  # imported when the command runs: fast --help

    lines = []
    for key, info in SOURCES.items():
        cl = classes(key)
        lines.append(f"{key}  {info.title}  (default -d {info.default_id} --name {info.default_name})")
        lines.append(f"    layout: {info.layout}")
        lines.append(f"    classes ({len(cl)}): {', '.join(cl)}")
    return "\n".join(lines)


def _convert(a: argparse.Namespace) -> int:
    from dataset_conversion.registry import get  # imported when the command runs: fast --help
    from dataset_conversion.runner import convert

    if a.list:
        print(list_sources())
        return 0
    if not a.source or not a.input_dir:
        convert_parser().error("SOURCE and INPUT_DIR are required (or --list, or merge)")
    info = get(a.source)
    report = convert(a.source, a.input_dir, a.dataset_id or info.default_id, a.name, a.num_workers,
                     a.skip_bad, {"groups": a.groups, "images": a.images}, progress=not a.no_progress)
    print(report.summary(), end="")
    return 0


def _merge(a: argparse.Namespace) -> int:
    from dataset_conversion.merge import merge  # imported when the command runs: fast --help

    report = merge(a.datasets, a.dataset_id, a.name, a.num_workers, progress=not a.no_progress)
    print(report.summary(), end="")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Bad input, a full disk or an unwritable folder: one line on stderr and exit 1 (the traceback
    too with --debug or SUPREM_DEBUG=1); output into a closed pipe ends quietly."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return run(_merge, merge_parser(), argv[1:])
    return run(_convert, convert_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
