"""What a run prints: no Beam type-hint warnings, a plain-text secret warned about once."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from sandbox.server import Sandbox

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def real_keyed_sandbox(tmp_path, monkeypatch):
    """The custom systems with keys of a real system's form (not the sandbox's own ``sbx_``
    keys, which are not secrets): the config holds one in plain text, as a user might."""
    monkeypatch.setattr(Sandbox, "api_key", lambda self, system: f"{system}-plain-key-98765")
    with Sandbox(state_dir=tmp_path / "sandbox", base_port=0,
                 systems=("customwebshop", "customerp")) as running:
        yield running


def test_a_run_prints_no_ignored_type_hints_and_warns_once_per_plain_text_secret(
        real_keyed_sandbox, tmp_path):
    sandbox = real_keyed_sandbox
    config = yaml.safe_load(sandbox.config_path.read_text())
    config["systems"]["customwebshop"]["api_key"] = "${SHOP_KEY}"
    path = tmp_path / "talksync.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "SHOP_KEY": sandbox.api_key("customwebshop")}

    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "-q", "run", "customerp-customwebshop",
         "--config", str(path)],
        env=env, capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stderr
    assert "type hint will be ignored" not in result.stderr
    assert result.stderr.count("systems.customerp.api_key holds a secret in plain text") == 1
    assert sandbox.api_key("customerp") not in result.stderr + result.stdout
