"""Shared bits of the command-line tools: logging, folders, argument types, error reporting."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import sys
import traceback
from typing import Callable, List, Optional, Sequence, Tuple

from .. import __version__, paths
from ..errors import SupremError
from ..sharding import parse_shard


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--version", action="version", version=f"suprem-nnunet {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true",
                   help="on an error, the full traceback instead of one line (also: environment SUPREM_DEBUG=1)")
    return p


#: the OS errors a user causes (a full disk, an unwritable folder), with their one-line problem
_OS_PROBLEMS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                errno.EROFS: "read-only file system", errno.EFBIG: "file too large for this file system"}
#: what `run` catches; `is_user_error` then keeps only the user's problems (anything else is a bug: full traceback)
USER_ERRORS = (SupremError, OSError)


def is_user_error(e: BaseException) -> bool:
    """A project error (`SupremError`), or an OS error a user causes: a full disk or quota, an
    unwritable or read-only folder, a file too large, a named file that is not there."""
    if isinstance(e, SupremError):
        return True
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno in _OS_PROBLEMS or (e.errno == errno.ENOENT and e.filename is not None)
    return False


def debugging(args: Optional[argparse.Namespace] = None) -> bool:
    """Full tracebacks: --debug on the command line, or SUPREM_DEBUG set to anything but 0/empty."""
    env = os.environ.get("SUPREM_DEBUG", "")
    return bool(getattr(args, "debug", False) or (env and env != "0"))


def one_line(e: BaseException) -> str:
    """The one-line message of a user error: an OSError names its file and problem, a multi-line
    message (ITK's) is cut to its last meaningful line, and object addresses go."""
    if isinstance(e, OSError) and e.errno is not None and (e.filename is not None or e.errno in _OS_PROBLEMS):
        problem = _OS_PROBLEMS.get(e.errno) or e.strerror or type(e).__name__
        return f"{e.filename}: {problem}" if e.filename is not None else problem
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if len(lines) > 1:  # ITK: 'Exception thrown in SimpleITK ...:' then the file and line, then the reason
        lines = [ln for ln in lines if not ln.startswith(("Exception thrown", "sitk::ERROR:"))] or lines
        lines = [" ".join(lines[-1:])]
    text = re.sub(r"\(0x[0-9a-fA-F]+\)", "", lines[0] if lines else type(e).__name__)
    return text.replace("ITK ERROR: ", "")


def report_error(prog: str, e: BaseException) -> int:
    """Print `prog: error: <one line>` on stderr; returns the exit status 1."""
    print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
    return 1


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


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = None
    if v is None or v < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def shard_spec(text: str) -> Tuple[int, int]:
    """--shard: 'K/N' -> (K, N), shard K (from 0) of N."""
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def seed_int(text: str) -> int:
    """--seed: an integer in [0, 2**32 - 1]."""
    from ..seeding import check_seed

    try:
        return check_seed(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--seed must be ", "expected ")) from None


def add_seed_args(p, what: str = "everything random in the run") -> None:
    """--seed and --deterministic, the same on every command that trains."""
    p.add_argument("--seed", type=seed_int, default=0,
                   help=f"seed of {what} (Python, NumPy, torch, augmentation workers); recorded in run_info.json")
    p.add_argument("--deterministic", action="store_true",
                   help="also cuDNN/torch deterministic kernels and augmentation batches in a fixed order "
                        "(slower on GPUs; CPU runs with nnUNet_n_proc_DA=0 are reproducible without it)")


def add_backend_args(p: argparse.ArgumentParser, what: str = "window") -> None:
    """--backend, --backend-cache and --threads: where a network runs on a CPU (inference/backends.py)."""
    p.add_argument("--backend", default="torch", choices=["torch", "compile", "openvino", "auto"],
                   help=f"CPU: where the network runs. compile: torch.compile (needs a C++ compiler; compiles once "
                        f"per {what} shape); openvino: needs pip install 'suprem-nnunet[openvino]' (exported once per "
                        f"model and {what} shape into --backend-cache, float32); auto: the fastest of these whose "
                        f"logits match torch's on the first {what}")
    p.add_argument("--backend-cache", default=None, metavar="FOLDER",
                   help="OpenVINO exports (default: $SUPREM_BACKEND_CACHE or ~/.cache/suprem_nnunet/openvino)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the network (default: torch's, i.e. the cores it sees)")


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
    """Parse, set up logging and folders, run; user errors (bad files, a full disk, an unwritable
    folder) become one line on stderr and exit 1, with the full traceback before it under --debug
    or SUPREM_DEBUG=1; a closed stdout (output piped into `head`) ends the command quietly."""
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
    except USER_ERRORS as e:
        if not is_user_error(e):
            raise
        if debugging(args):
            traceback.print_exc()
        return report_error(p.prog, e)
