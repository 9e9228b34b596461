"""The architecture, held by test: the walls docs/architecture.md describes, read from the sources.

Imports are read with `ast` (not by importing), so a wall that breaks fails here with the module
and the import that broke it.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "pipelines")
MAX_MODULE_LINES = 300
MAX_TOP_LEVEL_MODULES = 10
WEB_FRAMEWORKS = ("fastapi", "starlette")


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def own_imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a `from package import module` counts as the module)."""
    return {imported for imported in imports_of(path) if imported in known and imported != name}


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: own_imports(name, path, known) for name, path in known.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_300_lines(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines"


def test_service_holds_few_modules_directly() -> None:
    direct = sorted(path.name for path in (ROOT / "service").glob("*.py"))
    assert len(direct) <= MAX_TOP_LEVEL_MODULES, direct


def test_only_the_edge_imports_the_web_framework() -> None:
    allowed = ("service.http", "service.app")
    for name, path in modules().items():
        framework = [imported for imported in imports_of(path) if imported.split(".")[0] in WEB_FRAMEWORKS]
        assert not framework or name.startswith(allowed), f"{name} imports {framework[0]}"


def test_no_route_imports_another_route() -> None:
    routes = "service.http.routes."
    for name, path in modules().items():
        if name.startswith(routes):
            others = [imported for imported in imports_of(path) if imported.startswith(routes) and imported != name]
            assert not others, f"{name} imports {others[0]}"


def test_pipelines_are_built_from_plain_arguments() -> None:
    for name, path in modules().items():
        if name.startswith("pipelines"):
            service = [imported for imported in imports_of(path) if imported.split(".")[0] == "service"]
            assert not service, f"{name} imports {service[0]}"
