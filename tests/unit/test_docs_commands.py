"""Every command shown in README.md and docs/**/*.md parses with its command's own argparse parser.

A command is a line of a ```bash (or sh, shell, or unlabelled) fence, joined with its `\\`
continuation lines, cut at `&&`, `||`, `|` and `;` and stripped of redirections, with each shell
variable (`$NODE_RANK`, `"${SLURM_ARRAY_TASK_ID}"`) read as `1` (a job array's index parses as a number), whose first word (after `VAR=value` assignments) is one of the
console scripts of setup.py's COMMANDS (also as `.venv/bin/<script>`), or any line holding
`-m suprem_nnunet.<module>` / `-m dataset_conversion.<module>` (`python -m …`, `torchrun … -m …`):
then the words after the module are checked. A segment holding `$(` is skipped. The parser is the
module's `build_parser()`; a module without one (`suprem_nnunet.cli.convert`, the benchmarks) runs its
`main(argv)` with `ArgumentParser.parse_args` stopped right after parsing, so nothing else runs.
Only the parsing is checked: paths need not exist. Runs in about a second.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest


def _root() -> Path:
    here = Path(__file__).resolve().parent
    while not (here / "setup.py").is_file():
        if here.parent == here:
            raise FileNotFoundError(f"{Path(__file__)}: no setup.py in any parent folder")
        here = here.parent
    return here


ROOT = _root()
FENCE = re.compile(r"^```\s*(\w*)")
SEPARATORS = re.compile(r"&&|\|\||\||;")
MODULE = re.compile(r"^(suprem_nnunet|dataset_conversion)(\.\w+)*$")
REDIRECT = re.compile(r"^\d*(>>?|<)(&\d+)?$")  # `>`, `2>&1`, ...: a bare operator (a file follows unless &N)
REDIRECT_TO = re.compile(r"^\d*(>>?|<)\S+$")  # `>log`, `2>/dev/null`
VARIABLE = re.compile(r"\$(\{[A-Za-z_]\w*\}|[A-Za-z_]\w*)")  # `$NAME`, `${NAME}`
SHELL_FENCES = ("bash", "sh", "shell", "")


def _console_scripts() -> Dict[str, str]:
    """setup.py's COMMANDS ({script: "module:function"}), read without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMMANDS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"{ROOT / 'setup.py'}: no COMMANDS dict")


SCRIPTS = _console_scripts()


def doc_files() -> List[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shell_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, logical line) of every bash/sh/shell fence in `path`."""
    fence: Optional[str] = None
    pending, start = "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = FENCE.match(line.strip())
        if m:
            fence = None if fence is not None else m.group(1).lower()
            pending = ""
            continue
        if fence not in SHELL_FENCES:
            continue
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def commands(line: str) -> Iterator[Tuple[str, List[str]]]:
    """(module, argv) for every project command in one shell line."""
    for segment in SEPARATORS.split(line):
        if "$(" in segment:
            continue
        words = _without_redirections(shlex.split(VARIABLE.sub("1", segment), comments=True))
        while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
            words = words[1:]
        if not words:
            continue
        script = words[0].rsplit("/", 1)[-1]
        if script in SCRIPTS:
            yield SCRIPTS[script].partition(":")[0], words[1:]
            continue
        for i, w in enumerate(words[:-1]):
            if w == "-m" and MODULE.match(words[i + 1]):
                yield words[i + 1], words[i + 2:]
                break


def _without_redirections(words: List[str]) -> List[str]:
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif REDIRECT.match(w):
            skip = "&" not in w
        elif not REDIRECT_TO.match(w):
            out.append(w)
    return out


class _Parsed(BaseException):
    """Raised by the patched parse_args once the arguments are parsed (BaseException: no command's
    error handling catches it)."""


def parse(module: str, argv: List[str], monkeypatch) -> Optional[str]:
    """None when `argv` parses with `module`'s parser, else argparse's message."""
    mod = importlib.import_module(module)
    if not hasattr(mod, "build_parser") and not hasattr(mod, "main"):
        mod = importlib.import_module(module + ".__main__")  # `python -m <package>`
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if hasattr(mod, "build_parser"):
                mod.build_parser().parse_args(argv)
            else:
                original = argparse.ArgumentParser.parse_args

                def stop(self, args=None, namespace=None):
                    raise _Parsed(original(self, args, namespace))

                with monkeypatch.context() as m:
                    m.setattr(argparse.ArgumentParser, "parse_args", stop)
                    mod.main(argv)
                return f"{module}.main returned without parsing arguments"
    except _Parsed:
        return None
    except SystemExit as e:
        return None if e.code in (0, None) else (err.getvalue().strip() or f"exit {e.code}")
    return None


def all_commands() -> List[Tuple[str, str, List[str]]]:
    found = []
    for path in doc_files():
        for n, line in shell_lines(path):
            for module, argv in commands(line):
                found.append((f"{path.relative_to(ROOT)}:{n}", module, argv))
    return found


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """nnU-Net folders and the working directory in tmp_path (a command's main may set up its
    folders before it parses)."""
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "SUPREM_HOME", "SUPREM_ZOO"):
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_every_documented_command_parses(isolated):
    """Unit: one command line of the docs; n: every such line (asserted to be more than 60, and to
    cover every console script)."""
    monkeypatch = isolated
    found = all_commands()
    failures = [f"{where}: {module} {shlex.join(argv)}\n    {msg.splitlines()[-1]}"
                for where, module, argv in found
                if (msg := parse(module, argv, monkeypatch)) is not None]
    assert not failures, "commands in the docs that do not parse:\n" + "\n".join(failures)
    assert len(found) > 60, f"only {len(found)} commands found in the docs"
    shown = {module for _, module, _ in found}
    missing = sorted(s for s, entry in SCRIPTS.items() if entry.partition(":")[0] not in shown)
    assert not missing, f"console scripts no doc shows: {missing}"


def test_extraction_joins_continuations_and_cuts_at_separators(tmp_path):
    """The extractor itself, on a made-up file: a continued line, a chain, a pipe, a torchrun line,
    a placeholder substitution, a non-project command, a text fence (skipped) and an unlabelled
    fence with an environment assignment and redirections."""
    doc = tmp_path / "x.md"
    doc.write_text("```bash\nsuprem_predict -i a -o b \\\n    -m c   # note\n"
                   "python3 -m venv .venv && .venv/bin/suprem_demo --out d\n"
                   "suprem_convert --list | head\n"
                   "torchrun --nproc_per_node 2 -m suprem_nnunet.cli.train 1 3d_fullres\n"
                   "suprem_zoo info $(cat name)\nls -l\n```\n```text\nsuprem_train --nope\n```\n"
                   "```\nOMP_NUM_THREADS=1 python -m suprem_nnunet.benchmarks gpu --dry-run 2>&1 > log\n```\n")
    got = [c for _, line in shell_lines(doc) for c in commands(line)]
    assert got == [("suprem_nnunet.cli.predict", ["-i", "a", "-o", "b", "-m", "c"]),
                   ("suprem_nnunet.cli.demo", ["--out", "d"]),
                   ("suprem_nnunet.cli.convert", ["--list"]),
                   ("suprem_nnunet.cli.train", ["1", "3d_fullres"]),
                   ("suprem_nnunet.benchmarks", ["gpu", "--dry-run"])]


def test_a_wrong_flag_is_caught(isolated):
    """The check is not vacuous: an unknown flag fails, for a build_parser module and for one that
    is parsed through its main."""
    assert parse("suprem_nnunet.cli.train", ["1", "--no-such-flag"], isolated) is not None
    assert parse("suprem_nnunet.cli.convert", ["--no-such-flag"], isolated) is not None
    assert parse("suprem_nnunet.cli.train", ["1", "3d_fullres", "--epochs", "2"], isolated) is None
    assert parse("suprem_nnunet.cli.convert", ["merge", "101", "102", "-d", "100"], isolated) is None
