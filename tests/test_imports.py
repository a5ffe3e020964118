"""The package's modules: each imports, no import chain comes back to where it started,
and only the console script reaches into the CLI.

The import graph is read from the source (every ``import`` and ``from ... import``
statement, also those inside functions), so a cycle hidden behind a lazy import
counts as a cycle. Importing a submodule imports its parent package first; that
implicit step is not an edge, as in other import linters: a package's
``__init__`` importing its own submodules is how a package is built.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import batchflag_db

PACKAGE = batchflag_db.__name__
CLI = f"{PACKAGE}.cli"


def package_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name, with its source file."""
    found = {PACKAGE: Path(batchflag_db.__file__)}
    for info in pkgutil.walk_packages(batchflag_db.__path__, prefix=f"{PACKAGE}."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None, info.name
        assert spec.origin is not None, info.name
        found[info.name] = Path(spec.origin)
    return found


def imported_names(source: str, module: str, *, is_package: bool) -> set[str]:
    """The dotted names ``module``'s source imports, wherever the statement stands.

    ``from a import b`` yields both ``a.b`` and ``a``: which of them is a module is
    decided against the package's modules by :func:`import_graph`.
    """
    names: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (itself left out)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        imported = imported_names(source, name, is_package=path.name == "__init__.py")
        graph[name] = {target for target in imported if target in modules} - {name}
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one import chain that comes back to its start (``[a, b, a]``), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


MODULES = package_modules()


class TestEveryModule:
    @pytest.mark.parametrize("name", sorted(MODULES))
    def test_imports(self, name: str) -> None:
        """Each module of the package imports on its own (none is dead or broken)."""
        assert importlib.import_module(name).__name__ == name

    def test_the_walk_finds_the_package(self) -> None:
        """The walk sees the subpackages too, so the checks below cover the whole package."""
        assert {PACKAGE, f"{PACKAGE}.flag", CLI, f"{CLI}.group", f"{CLI}.helpers"} <= set(MODULES)


class TestImportGraph:
    def test_no_import_cycles(self) -> None:
        """No module imports one that (directly or through others) imports it back."""
        cycle = find_cycle(import_graph(MODULES))
        assert cycle is None, "import cycle: " + " -> ".join(cycle or [])

    def test_only_the_console_script_reaches_the_cli(self) -> None:
        """Nothing outside batchflag_db/cli/ imports the CLI; the entry point is its only door."""
        offenders = {
            module: sorted(t for t in targets if t == CLI or t.startswith(f"{CLI}."))
            for module, targets in import_graph(MODULES).items()
            if module != CLI and not module.startswith(f"{CLI}.")
        }
        assert {m: t for m, t in offenders.items() if t} == {}

    def test_the_graph_holds_known_edges(self) -> None:
        """The graph is read from the source: edges the package really has are in it."""
        graph = import_graph(MODULES)
        assert f"{CLI}.group" in graph[CLI]
        assert f"{PACKAGE}.status" in graph[f"{PACKAGE}.demo"]
        assert f"{PACKAGE}._connection" in graph[f"{PACKAGE}.flag"]
        assert f"{PACKAGE}.errors" in graph[PACKAGE]


class TestTheCheckers:
    def test_imports_inside_functions_count(self) -> None:
        """A lazy import inside a function is an edge like any other."""
        source = "def f():\n    from batchflag_db import cli\n    import batchflag_db.flag\n"
        names = imported_names(source, "batchflag_db.demo", is_package=False)
        assert {"batchflag_db.cli", "batchflag_db.flag"} <= names

    def test_relative_imports_are_resolved(self) -> None:
        """``from . import x`` and ``from .y import z`` name modules of the same package."""
        source = "from . import group\nfrom .helpers import BATCH_ID\n"
        names = imported_names(source, "batchflag_db.cli", is_package=True)
        assert {"batchflag_db.cli.group", "batchflag_db.cli.helpers"} <= names
        names = imported_names(source, "batchflag_db.cli._flag", is_package=False)
        assert {"batchflag_db.cli.group", "batchflag_db.cli.helpers"} <= names

    def test_a_cycle_is_found(self) -> None:
        """A chain a -> b -> c -> a is reported, starting where the walk entered it."""
        assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
        assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
