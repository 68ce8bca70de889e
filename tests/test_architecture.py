"""The structure the code must keep (docs/architecture.md, "Layers").

- The import contracts in pyproject.toml's ``[tool.importlinter]`` hold: the layers pipelines →
  transforms → connectors → core (never upwards), a core free of Beam, HTTP, stores and cloud
  clients, emulators that import nothing of the product, a product that imports the emulators
  only from the CLI's sandbox and demo commands, and no import cycle in any package (lazy
  imports inside functions count too).
- Those two commands import the emulators lazily: importing the CLI loads no ``sandbox``
  module, so a Dataflow worker never needs the emulators' servers.
- No module of the product packages (core, connectors, transforms, pipelines) or of the
  emulators (sandbox) is over 800 lines.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
PACKAGES = ("core", "connectors", "transforms", "pipelines", "sandbox")
MAX_MODULE_LINES = 800


def test_the_import_contracts_hold():
    result = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def _printed_by_a_fresh_python(code: str) -> str:
    """What ``code`` prints in a new interpreter (a clean ``sys.modules``)."""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_cli_imports_the_emulators_only_when_a_sandbox_command_runs():
    assert _printed_by_a_fresh_python(
        "import sys, pipelines.cli; "
        "print(sorted(m for m in sys.modules if m == 'sandbox' or m.startswith('sandbox.')))"
    ) == "[]"


def test_the_core_loads_without_beam_or_an_http_client():
    assert _printed_by_a_fresh_python(
        "import sys, core.spec, core.model, core.types, core.mapping, core.planner; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'apache_beam', 'requests', 'connectors', 'transforms', 'pipelines', 'sandbox'}))"
    ) == "[]"


def test_no_module_is_over_800_lines():
    sizes = {str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
             for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}
    assert sizes, "no modules found"
    offenders = {path: lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines (split them): {offenders}"
