"""The shape the project keeps: layers import one way down, small functions, small files."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cvtool"
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 400


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def in_layer(*layers: str) -> list[Path]:
    return [p for p in SOURCES if p.relative_to(PACKAGE).parts[0] in layers]


@pytest.mark.parametrize("path", in_layer("engine", "data", "models", "ops"), ids=rel)
def test_lower_layers_never_import_tasks_or_the_cli(path):
    upward = {m for m in imported(path)
              if m.startswith(("cvtool.tasks", "cvtool.export", "cvtool.cli", "cvtool.commands"))
              or m in ("cvtool.tasks", "cvtool.cli")}
    assert not upward, f"{rel(path)} imports {sorted(upward)}"


@pytest.mark.parametrize("path", in_layer("tasks"), ids=rel)
def test_tasks_never_import_the_cli(path):
    upward = {m for m in imported(path) if m.startswith(("cvtool.cli", "cvtool.commands", "cvtool.export"))}
    assert not upward, f"{rel(path)} imports {sorted(upward)}"


@pytest.mark.parametrize("path", in_layer("data"), ids=rel)
def test_data_imports_nothing_from_the_engine(path):
    engine = {m for m in imported(path) if m.startswith("cvtool.engine")}
    assert not engine, f"{rel(path)} imports {sorted(engine)}"


def test_no_function_over_80_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{rel(path)}:{node.lineno} {node.name} ({node.end_lineno - start + 1} lines)")
    assert not long, long


def test_no_file_over_400_lines():
    big = [f"{rel(p)} ({n} lines)" for p in SOURCES
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES]
    assert not big, big
