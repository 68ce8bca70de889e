"""A sync process killed (SIGKILL) mid-run: the rerun adopts what was written, never duplicates."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest
import yaml

from connectors.stores import open_link_store
from tests.test_sync_customerp_customwebshop import _assert_one_to_one, _writes

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run_until(harness, marker: str, occurrence: int) -> str:
    """Starts `talksync run` and SIGKILLs it when ``marker`` has appeared ``occurrence`` times
    in its progress output; returns that output."""
    env = {**os.environ, **harness.sandbox.environ(), "PYTHONPATH": str(REPO),
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "customerp-customwebshop", "--config",
         harness.config], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen, lines = 0, []
    try:
        for line in process.stderr:
            lines.append(line)
            if marker in line:
                seen += 1
                if seen == occurrence:
                    process.send_signal(signal.SIGKILL)
                    break
    finally:
        process.kill()
        process.wait(timeout=60)
    assert seen == occurrence, "".join(lines)
    assert process.returncode == -signal.SIGKILL
    return "".join(lines)


@pytest.mark.parametrize("marker,occurrence", [
    ("customer: wrote", 1),     # creates sent, none of their links committed
    ("product: wrote", 2),      # customers done, product creates sent on both sides
    ("order: wrote", 1),        # orders created with references, links not committed
    ("customer: committed", 1), # some links committed, others not
])
def test_killed_run_is_completed_by_the_next_run_without_duplicates(harness, marker,
                                                                    occurrence):
    _run_until(harness, marker, occurrence)
    pair = marker.split(":")[0]
    with open_link_store(yaml.safe_load(open(harness.config))["link_store"]) as store:
        pending = store.pending(f"customerp-customwebshop/{pair}")
    if "wrote" in marker:
        assert pending, "the kill should leave creates reserved but not committed"

    status, report = harness.run()

    assert status == 0, report
    if "wrote" in marker:   # the reserved creates were adopted, not created again
        assert report["pairs"][pair]["linked_by_match"] > 2 * {   # 2 records a link
            "customer": 40, "product": 30, "order": 5}[pair]
    _assert_one_to_one(harness)
    harness.clear_logs()
    status, report = harness.run()
    assert status == 0 and _writes(report) == {}
    assert harness.writes("customwebshop") == {} and harness.writes("customerp") == {}
