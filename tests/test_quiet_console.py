"""What a run prints: no Beam type-hint warnings, a plain-text secret warned about once."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_a_run_prints_no_ignored_type_hints_and_warns_once_per_plain_text_secret(sandbox,
                                                                                   tmp_path):
    config = yaml.safe_load(sandbox.config_path.read_text())
    config.pop("sandbox", None)  # a real config: plain-text secrets are warned about
    config["systems"]["customerp"]["api_key"] = sandbox.api_key("customerp")
    config["link_store"] = f"sqlite:///{tmp_path / 'links.db'}"
    config["runs_dir"] = str(tmp_path / "runs")
    path = tmp_path / "talksync.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}

    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "-q", "run", "customerp-customwebshop",
         "--config", str(path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)

    assert result.returncode == 0, result.stderr
    assert "type hint will be ignored" not in result.stderr
    assert result.stderr.count("systems.customerp.api_key holds a secret in plain text") == 1
    assert sandbox.api_key("customerp") not in result.stderr + result.stdout
