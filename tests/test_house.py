"""The house rules of aurora/, read from the source alone (ast: nothing is imported or run).

- No import circle between modules, counting every import (inside functions and under
  ``TYPE_CHECKING`` too).
- The top floor (the packages and loose modules right under ``aurora/``) is layered: no arrow
  runs back up, but for the few named in :data:`UPWARD_ARROWS`, each with the step that removes it.
- No module over 400 lines and no function over 80 lines, but for today's offenders in
  :data:`LONG_MODULES` / :data:`LONG_FUNCTIONS`, none of which may grow; an offender brought
  under the bar must leave the list (the lists only shrink).
- Every package's ``__init__`` docstring says in two lines or more what it owns and what it must
  not import; no two classes share a name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "aurora"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80

#: Top-floor arrows that run back up today: (importer, imported) -> what removes it.
UPWARD_ARROWS: dict[tuple[str, str], str] = {}
#: Modules over the bar today (path under aurora/ -> lines); none may grow.
LONG_MODULES: dict[str, int] = {}
#: Functions over the bar today ("path:name" -> lines); none may grow.
LONG_FUNCTIONS: dict[str, int] = {}


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package's is its ``__init__.py``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement names (``from a import b`` gives ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        here = here[: len(here) - node.level + 1]
        base = ".".join(here + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" for a in node.names]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports, every import statement counted."""
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            for target in _imported(node, name, path.name == "__init__.py"):
                while target and target not in mods:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def top_floor(graph: Mapping[str, Iterable[str]]) -> dict[tuple[str, str], list[str]]:
    """(importer, imported) top-floor rooms (``aurora.run.main`` -> ``run``) -> the module
    arrows behind each, ``a -> b``."""
    out: dict[tuple[str, str], list[str]] = {}
    for a, targets in graph.items():
        for b in targets:
            ta, tb = a.split(".")[1:2], b.split(".")[1:2]
            if ta and tb and ta != tb:
                out.setdefault((ta[0], tb[0]), []).append(f"{a} -> {b}")
    return out


def upward_circles(
    root: Path, allowed: Iterable[tuple[str, str]] = ()
) -> list[tuple[list[str], list[str]]]:
    """Circles of the top floor once the ``allowed`` arrows are taken out, each with the module
    arrows that tie it."""
    arrows = {k: v for k, v in top_floor(import_graph(root)).items() if k not in set(allowed)}
    graph: dict[str, set[str]] = {}
    for a, b in arrows:
        graph.setdefault(a, set()).add(b)
    out = []
    for comp in circles(graph):
        ties = [m for (a, b), ms in sorted(arrows.items()) if a in comp and b in comp for m in ms]
        out.append((comp, ties))
    return out


def long_code(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Modules over :data:`MAX_MODULE_LINES` and functions over :data:`MAX_FUNCTION_LINES`:
    ``path`` / ``path:name`` (under ``root``) -> lines."""
    mods, funcs = {}, {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            mods[rel] = text.count("\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > MAX_FUNCTION_LINES:
                    key = f"{rel}:{node.name}"
                    funcs[key] = max(n, funcs.get(key, 0))
    return mods, funcs


def short_package_docstrings(root: Path) -> list[str]:
    """Packages (folders of modules) whose ``__init__.py`` is missing or whose docstring has
    fewer than two lines."""
    bad = []
    folders = sorted({p.parent for p in root.rglob("*.py")})
    for folder in folders:
        init = folder / "__init__.py"
        if not init.is_file():
            bad.append(f"{folder.relative_to(root.parent)}/ (no __init__.py)")
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if len(doc.strip().splitlines()) < 2:
            bad.append(str(init.relative_to(root.parent)))
    return bad


def test_no_import_circle_between_modules() -> None:
    found = circles(import_graph(ROOT))
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_arrow_runs_back_up_the_top_floor() -> None:
    found = upward_circles(ROOT, UPWARD_ARROWS)
    assert not found, "\n".join(
        f"top-floor circle {' <-> '.join(comp)}, tied by: {', '.join(ties)}" for comp, ties in found
    )


def test_the_upward_arrows_still_listed_still_exist() -> None:
    arrows = top_floor(import_graph(ROOT))
    gone = [f"{a} -> {b}" for a, b in UPWARD_ARROWS if (a, b) not in arrows]
    assert not gone, f"no longer imported, remove from UPWARD_ARROWS: {gone}"


def test_no_module_or_function_over_the_bar_beyond_todays_offenders() -> None:
    mods, funcs = long_code(ROOT)
    grown = [
        f"{k}: {n} lines (listed at {allowed.get(k, 'none')}; bar {bar})"
        for found, allowed, bar in (
            (mods, LONG_MODULES, MAX_MODULE_LINES),
            (funcs, LONG_FUNCTIONS, MAX_FUNCTION_LINES),
        )
        for k, n in found.items()
        if n > allowed.get(k, bar)
    ]
    assert not grown, "over the bar: " + "; ".join(grown)


def test_the_lists_of_long_code_only_shrink() -> None:
    mods, funcs = long_code(ROOT)
    fixed = [k for k in LONG_MODULES if k not in mods] + [
        k for k in LONG_FUNCTIONS if k not in funcs
    ]
    assert not fixed, f"under the bar now, remove from LONG_MODULES / LONG_FUNCTIONS: {fixed}"


def test_every_package_says_what_it_owns_and_must_not_import() -> None:
    bad = short_package_docstrings(ROOT)
    assert not bad, f"package docstrings of fewer than two lines: {bad}"


def test_no_two_classes_share_a_name() -> None:
    seen: dict[str, list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                seen.setdefault(node.name, []).append(path.relative_to(ROOT).as_posix())
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    assert not twice, f"classes of one name: {twice}"


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checks_catch_a_circle_an_upward_arrow_and_a_short_docstring(tmp_path: Path) -> None:
    doc = '"""Owns x.\nMust not import y."""\n'
    pkg = _write(
        tmp_path,
        {
            "pkg/__init__.py": doc,
            "pkg/low/__init__.py": '"""One line only."""\n',
            # low.a <-> low.b: a circle of modules, one side inside a function (lazy import)
            "pkg/low/a.py": "from pkg.low.b import g\n",
            "pkg/low/b.py": "def g():\n    from . import a\n",
            # high -> low and low.c -> high (under TYPE_CHECKING): an arrow back up
            "pkg/high/__init__.py": doc,
            "pkg/high/h.py": "from pkg.low import c\n",
            "pkg/low/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from pkg.high.h import H\n",
            "pkg/loose/x.py": "import pkg.low.c\n",
        },
    )
    graph = import_graph(pkg)
    assert circles(graph) == [["pkg.high.h", "pkg.low.c"], ["pkg.low.a", "pkg.low.b"]]
    ((comp, ties),) = upward_circles(pkg)
    assert comp == ["high", "low"] and "pkg.low.c -> pkg.high.h" in ties
    assert upward_circles(pkg, [("low", "high")]) == []
    assert short_package_docstrings(pkg) == ["pkg/loose/ (no __init__.py)", "pkg/low/__init__.py"]
    long_fn = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    (pkg / "loose" / "x.py").write_text(long_fn)
    assert long_code(pkg) == ({}, {"loose/x.py:f": MAX_FUNCTION_LINES + 1})


@pytest.mark.parametrize(
    ("module", "is_package", "level", "name", "expected"),
    [
        ("pkg.a.b", False, 1, "c", "pkg.a.c"),
        ("pkg.a", True, 1, "c", "pkg.a.c"),
        ("pkg.a.b", False, 2, "c", "pkg.c"),
    ],
)
def test_relative_imports_resolve_from_the_importer(
    module: str, is_package: bool, level: int, name: str, expected: str
) -> None:
    node = ast.ImportFrom(module=None, names=[ast.alias(name=name)], level=level)
    assert _imported(node, module, is_package) == [expected]
