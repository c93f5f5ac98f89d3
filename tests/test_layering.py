"""The house's rules (docs/design.md, "The house"), read from the code's own imports.

Every import counts, also one inside a function: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCIENCE = ("data", "models", "estimators", "metrics", "theory")
WORKFLOWS = ("runs", "training", "evaluation", "visualize", "cli")
APP = ("streamlit", "ui", "services", "pages", "app")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*folders: str) -> dict[str, Path]:
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    return {module_name(p): p for p in files}


def imports(path: Path, name: str) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` counts a.b when b is a module of ours)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def our_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: {m for m in imports(path, name) if m in modules and m != name} for name, path in modules.items()}


def in_package(module: str, packages: tuple[str, ...], root: str = "") -> bool:
    return any(module == f"{root}{p}" or module.startswith(f"{root}{p}.") for p in packages)


CORE = sources("mtc_core")


@pytest.mark.parametrize("name", sorted(CORE))
def test_mtc_core_never_imports_the_app(name):
    bad = {m for m in imports(CORE[name], name) if in_package(m, APP)}
    assert not bad, f"{name} imports {sorted(bad)}: mtc_core sits below the app"


@pytest.mark.parametrize("name", sorted(n for n in CORE if in_package(n, SCIENCE, "mtc_core.")))
def test_science_never_imports_workflows(name):
    bad = {m for m in imports(CORE[name], name) if in_package(m, WORKFLOWS, "mtc_core.")}
    assert not bad, f"{name} imports {sorted(bad)}: science packages never import runs, training, evaluation or the CLI"


@pytest.mark.parametrize("name", sorted(n for n in CORE if in_package(n, WORKFLOWS[:-1], "mtc_core.")))
def test_workflows_never_import_the_cli(name):
    bad = {m for m in imports(CORE[name], name) if in_package(m, ("cli",), "mtc_core.")}
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(sources("services")))
def test_services_hold_no_streamlit(name):
    path = sources("services")[name]
    bad = {m for m in imports(path, name) if in_package(m, ("streamlit", "ui", "pages", "app"))}
    assert not bad, f"{name} imports {sorted(bad)}: a service works without Streamlit"


def test_the_streamlit_folder_holds_streamlit_code_only():
    for name, path in sources("ui").items():
        if name == "ui":
            continue
        assert any(in_package(m, ("streamlit",)) for m in imports(path, name)), f"{name} imports no Streamlit: it belongs elsewhere"


def test_no_import_cycles():
    modules = {**CORE, **sources("services"), **sources("ui")}
    edges = our_edges(modules)
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_top_level_stays_small_and_shadows_no_standard_module():
    top = sorted(p.stem for p in (ROOT / "mtc_core").glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= 6, f"mtc_core's top level holds {top}: group modules into packages"
    shadowing = {p.relative_to(ROOT).as_posix() for folder in ("mtc_core", "services", "ui") for p in (ROOT / folder).rglob("*.py")
                 if p.stem in sys.stdlib_module_names}
    assert not shadowing, f"modules named like the standard library's: {sorted(shadowing)}"


def test_modules_and_functions_stay_readable():
    """No module over 400 lines, no function over 80 (tests aside)."""
    too_long = []
    for folder in ("mtc_core", "services", "ui", "pages", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            source = path.read_text()
            if len(source.splitlines()) > 400:
                too_long.append(f"{path.relative_to(ROOT)}: {len(source.splitlines())} lines")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 80:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_the_layering_test_sees_a_violation(tmp_path):
    """The checks above read real imports: a module importing streamlit is seen (guards against a check that cannot fail)."""
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    import streamlit as st\n    from ..ui import widgets\n")
    assert "streamlit" in imports(fake, "mtc_core.estimators.m")
    assert "mtc_core.ui.widgets" in imports(fake, "mtc_core.estimators.m")
