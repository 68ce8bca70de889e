"""The mutation run's selection (pyproject.toml ``[tool.mutmut]``, tests/mutation_report.py)
names code that exists: a function renamed or moved (Exact's token rotation into
connectors/auth.py, say) would otherwise drop out of the scores without anyone noticing."""

from __future__ import annotations

import ast
import pathlib
import tomllib

import pytest

from tests import mutation_report

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _functions(module: str) -> set[str]:
    """``function``, ``Class.method`` and ``Class.*`` of every top-level definition."""
    names = set()
    for node in ast.parse((ROOT / module).read_text()).body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(f"{node.name}.*")
            names.update(f"{node.name}.{item.name}" for item in node.body
                         if isinstance(item, ast.FunctionDef))
    return names


@pytest.mark.parametrize("selection", ["WRITE_PATH", "WIRING"])
def test_every_function_the_report_selects_exists(selection):
    missing = [(module, name)
               for module, names in getattr(mutation_report, selection).items()
               for name in names if name not in _functions(module)]
    assert missing == []


def test_every_module_and_test_file_mutmut_is_given_exists():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    named = [*config["only_mutate"], *config["pytest_add_cli_args_test_selection"]]
    assert [path for path in named if not (ROOT / path).is_file()] == []
    assert set(mutation_report.WRITE_PATH) | set(mutation_report.WIRING) <= set(
        config["only_mutate"])
