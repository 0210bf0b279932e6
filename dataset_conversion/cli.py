"""`suprem_convert`: convert a public dataset, list the sources, or merge converted datasets.

    suprem_convert SOURCE INPUT_DIR [-d ID] [--name NAME] [-np N] [--skip-bad] [--groups G] [--images DIR]
    suprem_convert --list
    suprem_convert merge ID1 ID2 ... -d ID [--name NAME] [-np N]
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import List, Optional

from suprem_nnunet.cli.common import USER_ERRORS, debugging, is_user_error, report_error, stdout_closed
from suprem_nnunet.paths import setup_environment



def _list() -> str:
    from .registry import SOURCES, classes

    lines = []
    for key, info in SOURCES.items():
        cl = classes(key)
        lines.append(f"{key}  {info.title}  (default -d {info.default_id} --name {info.default_name})")
        lines.append(f"    layout: {info.layout}")
        lines.append(f"    classes ({len(cl)}): {', '.join(cl)}")
    return "\n".join(lines)


def _convert_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suprem_convert", description="Convert a public CT dataset to the unified "
                                "nnU-Net raw format ('suprem_convert merge -h' for merging).")
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
    p.add_argument("--debug", action="store_true", help="on an error, the full traceback instead of one line "
                   "(also: environment SUPREM_DEBUG=1)")
    return p


def _merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suprem_convert merge", description="Merge converted datasets into one "
                                "pre-training dataset, removing known duplicates.")
    p.add_argument("datasets", nargs="+", help="dataset ids or names to merge")
    p.add_argument("-d", "--dataset-id", type=int, required=True, help="output dataset id")
    p.add_argument("--name", default="Merged", help="output dataset name")
    p.add_argument("-np", "--num-workers", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true", help="on an error, the full traceback instead of one line")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Bad input, a full disk or an unwritable folder: one line on stderr and exit 1 (the traceback
    too with --debug or SUPREM_DEBUG=1); output into a closed pipe ends quietly."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "suprem_convert merge" if argv[:1] == ["merge"] else "suprem_convert"
    try:
        status = _main(argv)
        sys.stdout.flush()  # a closed pipe (`suprem_convert --list | head`) shows here, not at exit
        return status
    except BrokenPipeError:
        return stdout_closed()
    except USER_ERRORS as e:
        if not is_user_error(e):
            raise
        if "--debug" in argv or debugging():
            traceback.print_exc()
        return report_error(prog, e)


def _main(argv: Optional[List[str]] = None) -> int:
    setup_environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "merge":
        a = _merge_parser().parse_args(argv[1:])
        from .merge import merge
        report = merge(a.datasets, a.dataset_id, a.name, a.num_workers, progress=not a.no_progress)
    else:
        parser = _convert_parser()
        a = parser.parse_args(argv)
        if a.list:
            print(_list())
            return 0
        if not a.source or not a.input_dir:
            parser.error("SOURCE and INPUT_DIR are required (or --list, or merge)")
        from .registry import get
        from .runner import convert
        info = get(a.source)
        options = {"groups": a.groups, "images": a.images}
        report = convert(a.source, a.input_dir, a.dataset_id or info.default_id, a.name, a.num_workers,
                         a.skip_bad, options, progress=not a.no_progress)
    print(report.summary(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
