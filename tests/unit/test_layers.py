"""The arrows run one way: schemas <- bus <- {discovery_worker, manager_worker, http_edge} <-
govbus. Read from the source (ast), so an import anywhere in a module counts, even one made
only for type checking."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPLICATIONS = ("discovery_worker", "manager_worker", "http_edge", "health_checker")
PRODUCT = ("schemas", "bus", *APPLICATIONS, "govbus")
WORKER_SOURCES = ("govbus/discovery", "govbus/manager")
MAX_LINES = 500


@cache
def modules(package: str) -> tuple[Path, ...]:
    return tuple(sorted((ROOT / package).rglob("*.py")))


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imported(path: Path) -> set[str]:
    """The top-level packages a module imports (relative imports stay in its package)."""
    found = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def strings(path: Path) -> list[str]:
    return [
        node.value
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_layer_is_there():
    for package in PRODUCT:
        assert modules(package), f"{package}/ has no modules"


def test_bus_imports_no_application_nor_the_command():
    wrong = {
        where(path): sorted(imported(path) & {*APPLICATIONS, "govbus"}) for path in modules("bus")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_bus_names_no_application_and_no_worker_source_in_a_string():
    """No import by name (`importlib`), no table of workers, no worker's CloudEvents source:
    what the library needs of an application, the application gives it."""
    pattern = re.compile(
        "|".join([*(rf"\b{name}\b" for name in APPLICATIONS), *map(re.escape, WORKER_SOURCES)])
    )
    named = {
        where(path): sorted({m.group(0) for s in strings(path) for m in pattern.finditer(s)})
        for path in modules("bus")
    }
    assert {k: v for k, v in named.items() if v} == {}


def test_schemas_import_nothing_of_ours():
    wrong = {
        where(path): sorted(imported(path) & (set(PRODUCT) - {"schemas"}))
        for path in modules("schemas")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


@pytest.mark.parametrize("application", APPLICATIONS)
def test_an_application_imports_neither_the_command_nor_another_application(application):
    others = {*APPLICATIONS, "govbus"} - {application}
    wrong = {where(path): sorted(imported(path) & others) for path in modules(application)}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_product_module_is_over_500_lines():
    sizes = {
        where(path): len(path.read_text().splitlines())
        for package in PRODUCT
        for path in modules(package)
    }
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert too_long == {}
