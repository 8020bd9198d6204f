"""The packages import in one direction (issue 18).

The graph is read from the sources with :mod:`ast`, so imports inside functions count too: an
import moved into a function to dodge a cycle is still a cycle here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmarks", "adapt", "mtl")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports anywhere in its source (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # the longest known prefix: ``from benchmarks import cli`` is the module benchmarks.cli
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imported(name, path, known) for name, path in modules.items()}


def _packages_of(module: str) -> set[str]:
    """A module and the packages above it: importing ``a.b.c`` runs ``a`` and ``a.b`` first."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative; only the components with more than one module."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in graph:
                    continue
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def test_cycle_finder_finds_a_cycle_and_accepts_a_chain():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_relative_and_function_level_imports_are_read(tmp_path):
    source = "from . import sibling\n\ndef f():\n    from .other import thing\n    import pkg.third\n"
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {"pkg", "pkg.mod", "pkg.sibling", "pkg.other", "pkg.third"}
    assert _imported("pkg.mod", path, known) == {"pkg", "pkg.sibling", "pkg.other", "pkg.third"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    graph = import_graph()
    inside = {m: {d for d in deps if d.split(".")[0] == package and d not in _packages_of(m)}
              for m, deps in graph.items() if m.split(".")[0] == package}
    cycles = strongly_connected(inside)
    assert not cycles, "import cycles: " + "; ".join(" ↔ ".join(sorted(c)) for c in cycles)


def test_libraries_never_import_the_harness_or_each_other():
    graph = import_graph()
    for module, deps in graph.items():
        top = module.split(".")[0]
        if top in ("adapt", "mtl"):
            foreign = {d for d in deps if d.split(".")[0] not in (top,)}
            assert not foreign, f"{module} imports {sorted(foreign)}"


def _function_level_project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each import of a project module made inside a function body."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom):
                project = inner.level > 0 or (inner.module or "").split(".")[0] in PACKAGES
            elif isinstance(inner, ast.Import):
                project = any(alias.name.split(".")[0] in PACKAGES for alias in inner.names)
            else:
                continue
            if project:
                found.append((inner.lineno, lines[inner.lineno - 1]))
    return found


def test_project_imports_inside_functions_say_why():
    """An import moved into a function hides a dependency; one that stays there says why on its line."""
    unexplained = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()}"
        for path in _modules().values()
        for line, text in _function_level_project_imports(path)
        if "# imported here:" not in text
    ]
    assert not unexplained, "imports inside functions without '# imported here: <why>':\n" + "\n".join(unexplained)


def test_function_level_import_finder(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\ndef f():\n    from .x import y\n    import json\n    from adapt import z  # imported here: why\n")
    assert [line for line, _ in _function_level_project_imports(path)] == [4, 6]
