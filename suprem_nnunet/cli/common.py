"""Shared bits of the command-line tools: logging, folders, argument types, error reporting."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, List, Optional, Sequence

from .. import __version__, paths


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--version", action="version", version=f"suprem-nnunet {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _triple(text: str, cast, what: str) -> list:
    parts = [p for p in text.replace("x", ",").split(",") if p]
    try:
        vals = [cast(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected one or three {what}, got {text!r}") from None
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3 or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"expected one or three positive {what}, got {text!r}")
    return vals


def int_triple(text: str) -> List[int]:
    """'64' -> [64, 64, 64]; '32,64,64' or '32x64x64' -> [32, 64, 64]."""
    return _triple(text, int, "integers")


def float_triple(text: str) -> List[float]:
    """'1.5' -> [1.5, 1.5, 1.5]; '0.8,0.8,2.5' -> [0.8, 0.8, 2.5]."""
    return _triple(text, float, "numbers")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def stdout_closed() -> int:
    """Exit status after the reader of stdout went away (`suprem_convert --list | head`): the rest of
    the output is dropped quietly (stdout now points at /dev/null, so the flush at exit cannot fail
    again) and the command counts as successful, the reader having taken what it wanted."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return 0


def run(main_fn: Callable[[argparse.Namespace], Optional[int]], p: argparse.ArgumentParser,
        argv: Optional[Sequence[str]] = None) -> int:
    """Parse, set up logging and folders, run; user errors become one line on stderr and exit 1;
    a closed stdout (output piped into `head`) ends the command quietly."""
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("suprem_nnunet", "dataset_conversion"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    paths.setup_environment()
    try:
        status = int(main_fn(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return status
    except BrokenPipeError:
        return stdout_closed()
    except (ValueError, FileNotFoundError, FileExistsError, NotImplementedError, RuntimeError) as e:
        if args.verbose or os.environ.get("SUPREM_DEBUG"):
            raise
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
