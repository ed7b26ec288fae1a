"""The package's seams (DESIGN.md): every name has one home, declared in its module's ``__all__``; callers import it
from there; no import circles, no private names across modules, no import hidden inside a function; no module over
600 lines."""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "compresskit"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
MAX_LINES = 600


def _tree(name: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{name}.py").read_text())


def _defined(tree: ast.Module) -> list[str]:
    """Names a module defines at its top level (functions, classes, assignments), not the ones it imports."""
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return names


def _imports(tree: ast.Module):
    """(module imported from compresskit, name, at top level?) for every import of the package in ``tree``."""
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("compresskit"):
            for alias in node.names:
                target = node.module.split(".")[1] if "." in node.module else alias.name
                yield target, (alias.name if "." in node.module else None), id(node) in top


@pytest.mark.parametrize("name", MODULES)
def test_each_module_declares_exactly_the_names_it_defines(name):
    module = importlib.import_module(f"compresskit.{name}")
    assert isinstance(getattr(module, "__all__", None), list), f"compresskit.{name} has no __all__"
    defined = set(_defined(_tree(name)))
    public = {n for n in defined if not n.startswith("_")}
    assert len(module.__all__) == len(set(module.__all__)), f"compresskit.{name}.__all__ repeats a name"
    foreign = set(module.__all__) - defined
    assert not foreign, f"compresskit.{name}.__all__ lists names it does not define (aliases): {sorted(foreign)}"
    missing = public - set(module.__all__)
    assert not missing, f"compresskit.{name} defines public names missing from __all__: {sorted(missing)}"


def test_no_import_circles_no_private_names_across_modules_no_imports_inside_functions():
    edges, private, hidden = {}, [], []
    for name in MODULES:
        edges[name] = set()
        for target, imported, top in _imports(_tree(name)):
            if target == name or target not in MODULES:
                continue
            edges[name].add(target)
            if imported and imported.startswith("_"):
                private.append(f"{name} imports {target}.{imported}")
            if not top:
                hidden.append(f"{name} imports {target} inside a function")
    assert not private, private
    assert not hidden, hidden
    state = dict.fromkeys(MODULES, 0)  # 0 new, 1 on the current path, 2 done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges[node]):
            assert state[nxt] != 1, "import circle: " + " -> ".join(path + [nxt])
            if state[nxt] == 0:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in MODULES:
        if state[name] == 0:
            visit(name, [name])


@pytest.mark.parametrize("name", MODULES)
def test_modules_stay_readable_in_one_sitting(name):
    lines = len((PACKAGE / f"{name}.py").read_text().splitlines())
    assert lines <= MAX_LINES, f"compresskit/{name}.py has {lines} lines (at most {MAX_LINES}): split it by idea"


def _caller_sources():
    for path in sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("data/*.py"),
                        *PACKAGE.glob("*.py")]):
        yield path, path.read_text()
    for path in sorted(ROOT.glob("notebooks/*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        yield path, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_callers_reach_every_name_through_its_home():
    """``module.name`` and ``from compresskit.module import name`` only for names in that module's ``__all__``: a
    name another module merely imported (an old alias, a helper's own import) is not part of its API."""
    wrong = []
    for path, text in _caller_sources():
        for match in re.finditer(r"from compresskit\.(\w+) import (?:\(([^)]*)\)|([\w, ]+))", text):
            if match.group(1) not in MODULES:  # prose about the pattern, as in this file's docstrings
                continue
            module = importlib.import_module(f"compresskit.{match.group(1)}")
            for imported in (match.group(2) or match.group(3)).split(","):
                imported = imported.strip()
                if imported and imported not in module.__all__:
                    wrong.append(f"{path.relative_to(ROOT)}: from compresskit.{match.group(1)} import {imported}")
        used = set()
        for match in re.finditer(r"from compresskit import (?:\(([^)]*)\)|([\w, ]+))", text):
            used |= {n.strip() for n in (match.group(1) or match.group(2)).split(",") if n.strip() in MODULES}
        for name in used:
            module = importlib.import_module(f"compresskit.{name}")
            for attr in set(re.findall(rf"(?<![\w.]){name}\.(\w+)", text)):
                # a local variable of the same name (``rnn.weight_hh_l0``) has attributes the module lacks
                if hasattr(module, attr) and attr not in module.__all__ and not attr.startswith("_"):
                    wrong.append(f"{path.relative_to(ROOT)}: {name}.{attr}")
    assert not wrong, "names reached outside their home module:\n" + "\n".join(sorted(set(wrong)))
