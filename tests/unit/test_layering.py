"""The package's layering rule, checked on the source (ast; nothing is imported).

Unit: one import statement. A module may import only from its own layer or a layer below it; the
packages form no import circle; an import of a project module inside a function is allowed only in
`suprem_nnunet/cli/` (a command starts fast and imports its stage when it runs) and in the few places
listed in IN_FUNCTION_ALLOWED, each with its reason.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from helpers.paths import ROOT
PROJECT = ("suprem_nnunet", "dataset_conversion", "plans")

#: lowest first; a package imports only from its own layer or lower ones
LAYERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("foundations", ("suprem_nnunet", "suprem_nnunet.labels", "suprem_nnunet.paths", "suprem_nnunet.networks",
                     "suprem_nnunet.errors", "suprem_nnunet.configs", "suprem_nnunet.sharding", "suprem_nnunet.seeding", "suprem_nnunet.locking", "plans")),
    ("dataset", ("suprem_nnunet.dataset",)),
    ("data preparation", ("suprem_nnunet.preprocessing", "suprem_nnunet.synth", "dataset_conversion")),
    ("planning", ("suprem_nnunet.planning",)),
    ("zoo", ("suprem_nnunet.zoo",)),
    ("model reading", ("suprem_nnunet.models",)),
    ("training", ("suprem_nnunet.training",)),
    ("inference", ("suprem_nnunet.inference",)),
    ("evaluation", ("suprem_nnunet.evaluation",)),
    ("applications", ("suprem_nnunet.experiments", "suprem_nnunet.classification", "suprem_nnunet.review",
                      "suprem_nnunet.demo", "suprem_nnunet.benchmarks")),
    ("cli", ("suprem_nnunet.cli",)),
]

#: (file, imported module) -> why the import stays inside a function
IN_FUNCTION_ALLOWED: Dict[Tuple[str, str], str] = {
    ("suprem_nnunet/zoo/store.py", "suprem_nnunet.networks.checkpoint"):
        "the zoo's catalog and store import without torch (test_zoo); only importing a checkpoint needs it",
    ("suprem_nnunet/zoo/store.py", "suprem_nnunet.zoo.convert"): "as above (convert imports torch)",
    ("suprem_nnunet/planning/presets.py", "plans"):
        "the installed `plans` package, with the checkout's folder as the fallback when it is not installed",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The unit of the layering rule: `suprem_nnunet.<sub>` (or a top-level module), else the top package."""
    parts = module.split(".")
    if parts[0] != "suprem_nnunet":
        return parts[0]
    return ".".join(parts[:2])


def layer_index(package: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if package in members:
            return i
    raise KeyError(package)


def is_module(name: str) -> bool:
    base = ROOT / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def source_files() -> List[Path]:
    return sorted(p for pkg in PROJECT for p in (ROOT / pkg).rglob("*.py"))


def project_imports(path: Path) -> Iterator[Tuple[int, str, bool]]:
    """(line, imported project module, inside a function) for every import in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def in_function(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return True
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import x`: x is a submodule, or a name defined in the package itself
                names = [f"{target}.{a.name}" if not node.module and is_module(f"{target}.{a.name}") else target
                         for a in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PROJECT:
                yield node.lineno, name, in_function(node)


@functools.lru_cache(maxsize=1)
def all_imports() -> Tuple[Tuple[Path, int, str, bool], ...]:
    return tuple((p, line, name, inner) for p in source_files() for line, name, inner in project_imports(p))


def test_every_package_has_a_layer():
    packages = {package_of(module_name(p)) for p in source_files()}
    missing = sorted(p for p in packages if not any(p in m for _, m in LAYERS))
    assert not missing, f"packages without a layer in LAYERS: {missing}"


def test_no_module_imports_from_a_higher_layer():
    wrong = []
    for path, line, name, _ in all_imports():
        src, dst = package_of(module_name(path)), package_of(name)
        if layer_index(dst) > layer_index(src):
            wrong.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[layer_index(src)][0]}) imports {name} "
                         f"({LAYERS[layer_index(dst)][0]})")
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


def test_packages_form_no_import_circle():
    graph: Dict[str, Set[str]] = {}
    for path, _, name, _ in all_imports():
        src, dst = package_of(module_name(path)), package_of(name)
        if src != dst and dst != "suprem_nnunet":  # the root package holds only __version__
            graph.setdefault(src, set()).add(dst)
    # modules of one package: no circle either
    mod_graph: Dict[str, Set[str]] = {}
    modules = {module_name(p) for p in source_files()}
    for path, _, name, _ in all_imports():
        src = module_name(path)
        dst = name if name in modules else ".".join(name.split(".")[:-1])
        if dst in modules and dst != src and not src.startswith(dst + ".") and package_of(src) == package_of(dst):
            if not (ROOT / (dst.replace(".", "/") + "/__init__.py")).exists():
                mod_graph.setdefault(src, set()).add(dst)

    def circles(g: Dict[str, Set[str]]) -> List[List[str]]:
        found, state, stack = [], {}, []

        def visit(n: str) -> None:
            state[n] = 1
            stack.append(n)
            for m in sorted(g.get(n, ())):
                if state.get(m) == 1:
                    found.append(stack[stack.index(m):] + [m])
                elif m not in state:
                    visit(m)
            stack.pop()
            state[n] = 2

        for n in sorted(g):
            if n not in state:
                visit(n)
        return found

    assert not circles(graph), f"package import circles: {circles(graph)}"
    assert not circles(mod_graph), f"module import circles: {circles(mod_graph)}"


def test_imports_inside_functions_only_where_a_command_starts_fast():
    inner = []
    for path, line, name, inside in all_imports():
        rel = path.relative_to(ROOT).as_posix()
        if not inside or rel.startswith("suprem_nnunet/cli/") or (rel, name) in IN_FUNCTION_ALLOWED:
            continue
        inner.append(f"{rel}:{line} imports {name} inside a function")
    assert not inner, "move these imports to the top of their file:\n" + "\n".join(inner)


@pytest.mark.parametrize("key", sorted(IN_FUNCTION_ALLOWED))
def test_allowed_in_function_imports_still_exist(key):
    path, name = key
    found = [n for _, n, inside in project_imports(ROOT / path) if inside]
    assert name in found, f"{path}: no in-function import of {name} any more; drop it from IN_FUNCTION_ALLOWED"
