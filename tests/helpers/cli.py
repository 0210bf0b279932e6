"""Run a command-line tool as a user would: `python -m suprem_nnunet.cli.<module>` in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Mapping

from helpers.paths import ROOT


def run_cli(module: str, *args: object, env: Mapping[str, object], check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m suprem_nnunet.cli.<module> args` in a subprocess from the repository root, with
    `env` added to this process's environment; with `check`, a non-zero exit raises AssertionError
    showing the ends of stdout and stderr."""
    full_env = {**os.environ, **{k: str(v) for k, v in env.items()}}
    proc = subprocess.run([sys.executable, "-m", f"suprem_nnunet.cli.{module}", *map(str, args)],
                          capture_output=True, text=True, env=full_env, cwd=str(ROOT), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
