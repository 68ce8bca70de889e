"""`talksync sandbox serve` as a user runs it: its config runs as written (no exports), and a
taken port or an unknown system is one line and exit 2."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

from pipelines.config import load_config, parse_config
from sandbox.server import REGISTRY

REPO = pathlib.Path(__file__).resolve().parents[1]


def _clean_env() -> dict[str, str]:
    """The environment without any TALKSYNC_* variable: nothing exported by hand."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKSYNC_")}
    return {**env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _talksync(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=_clean_env(),
                          capture_output=True, text=True,
                          timeout=600, **kwargs)


def _wait_for_file(path: pathlib.Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} not written in time"
        time.sleep(0.1)


def test_the_served_config_runs_without_any_exported_key(tmp_path):
    state = tmp_path / "sandbox"
    serve = subprocess.Popen(                  # base port 0: each system on a port it binds
        [sys.executable, "-m", "pipelines.cli", "sandbox", "serve", "--base-port", "0",
         "--state", str(state)],
        env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_file(state / "talksync.yaml", serve)
        run = _talksync("-q", "run", "customerp-customwebshop",
                        "--config", str(state / "talksync.yaml"))
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=60)
    assert run.returncode == 0, run.stderr
    assert "plain text" not in run.stderr
    assert serve.returncode == 0, err
    assert "export" not in out
    url = load_config(state / "talksync.yaml").systems["customerp"].base_url
    assert url.startswith("http://127.0.0.1:") and f"customerp: {url}" in out


def test_a_taken_port_is_one_line_naming_port_system_and_option(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:     # held by this test throughout
        port = taken.getsockname()[1]
        base = port - REGISTRY["customerp"].port_offset
        result = _talksync("sandbox", "serve", "--base-port", str(base), "--systems",
                           "customerp", "--state", str(tmp_path / "sandbox"))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0] and "customerp" in lines[0] and "--base-port" in lines[0]


def test_an_unknown_system_is_refused_naming_all_five(tmp_path):
    result = _talksync("sandbox", "serve", "--base-port", "0", "--systems", "customerp,sap",
                       "--state", str(tmp_path / "sandbox"))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "sap" in lines[0], result.stderr
    for system in ("customwebshop", "customerp", "businesscentral", "businessnxt", "exact"):
        assert system in lines[0]
    assert not (tmp_path / "sandbox").exists()


def test_only_sandbox_keys_are_exempt_from_the_plain_text_warning(caplog):
    system = {"type": "customerp", "base_url": "http://127.0.0.1:1/erp/v1"}
    parse_config({"systems": {"erp": {**system, "api_key": "sbx_customerp_" + "0a" * 12}}},
                 "sandbox.yaml")
    parse_config({"systems": {"erp": {**system, "api_key": "sbx_customerp_real-key"}}},
                 "real.yaml")
    warnings = [r.getMessage() for r in caplog.records]
    assert not any("sandbox.yaml" in w for w in warnings)
    assert any("real.yaml: systems.erp.api_key holds a secret in plain text" in w
               for w in warnings)
