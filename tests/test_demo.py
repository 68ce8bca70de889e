"""`talksync demo` (`make demo`) end to end: the one test that runs it, from a clean start.

A module of its own, started first by `make test` (it takes minutes: the first `--all` of all
five systems with every pair): in the module of the customerp-customwebshop tests it kept one
worker busy with both while the other ran out of work. What the demo shows is also proved
piece by piece on a settled copy of the five systems (tests/test_provenance_all.py).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.long_module


def test_demo_runs_from_the_command_line(tmp_path):
    """`talksync demo` as README tells it (issue 15, point 6), in a clean environment."""
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600,
                            env={"PATH": "/usr/bin:/bin",
                                 "PYTHONPATH": str(pathlib.Path(__file__).parents[1])})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # all four dataflows, --all settled, then again without writing anything
    for dataflow in ("customerp-customwebshop", "exact-customwebshop",
                     "customwebshop-businesscentral", "customwebshop-businessnxt"):
        assert f"{dataflow} — sync run" in out, dataflow
    assert "The second --all wrote nothing" in out
    # the later of two edits (Business Central's) in all five systems, told by history
    assert "Every system has +47 400 22 222, the later edit" in out
    assert "$ talksync history " in out and "(from businesscentral;" in out
