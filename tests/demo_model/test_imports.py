"""The demo model stands alone: it imports nothing from the rest of the project.

That keeps ``python -m service.demo_model`` and the benchmark's upstream free of the
service's start-up cost and of its bugs, so it is checked on the source, not by habit.
"""

import ast
from pathlib import Path

import pytest

import service.demo_model

PACKAGE = Path(service.demo_model.__file__).parent
PROJECT_PACKAGES = ("service", "pipelines", "tests", "bench")
MODULES = sorted(PACKAGE.glob("*.py"))


def _imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, with its relative-import level (0 for absolute)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_the_package_has_its_modules() -> None:
    assert {"__init__.py", "__main__.py", "server.py", "wire.py"} <= {path.name for path in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_a_demo_model_module_imports_nothing_else_from_the_project(path: Path) -> None:
    for module, level in _imported_modules(path):
        assert level == 0, f"{path.name}: relative import of {module!r}"
        inside = module == "service.demo_model" or module.startswith("service.demo_model.")
        assert inside or module.partition(".")[0] not in PROJECT_PACKAGES, f"{path.name} imports {module}"
