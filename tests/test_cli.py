"""The `talksync` command: listing, docs, exit statuses, --pairs, --full, --every, sandbox serve."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import requests
import yaml

from core.spec import available_dataflows
from pipelines import cli, docs
from pipelines import config as config_module

REPO = pathlib.Path(__file__).resolve().parents[1]


def _talksync(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_dataflows_lists_every_pair(capsys):
    assert cli.main(["dataflows"]) == 0
    out = capsys.readouterr().out
    assert "customerp-customwebshop: Customerp to Customwebshop" in out
    assert "order: Customerp Order (Orders) ⇄ Customwebshop Order (orders); match number" in out


def _without_timestamp(text: str) -> list[str]:
    """A generated document's lines but its ``Generated:`` line (the one that differs per run)."""
    return [line for line in text.splitlines() if not line.startswith("Generated: ")]


def test_committed_dataflow_documents_are_generated_from_the_specs(tmp_path):
    paths = docs.write_documents(available_dataflows().values(), tmp_path)
    assert paths
    for path in paths:
        committed = REPO / "docs" / "dataflows" / path.name
        assert committed.exists(), f"run `make docs` to add {committed.name}"
        assert _without_timestamp(committed.read_text()) == _without_timestamp(path.read_text()), \
            f"{committed.name} is out of date: run `make docs`"


def test_document_has_the_seed_structure_with_filled_tables():
    text = docs.render_dataflow(available_dataflows()["customerp-customwebshop"])
    assert "Customerp Order to Customwebshop Order\n--------------------------------------" \
        in text
    assert "Every Customerp Order will be synchronized with a Customwebshop Order." in text
    assert ("   * - Lines[].ItemNo\n     - lines[].product_id\n"
            "     - reference to Customwebshop Product") in text
    assert "confidential" not in text.lower()


def test_a_dataflow_can_have_more_documents_under_other_labels():
    import yaml as yaml_

    from core.spec import DATAFLOWS_DIR, parse_dataflow
    doc = yaml_.safe_load((DATAFLOWS_DIR / "customerp-customwebshop.yaml").read_text())
    doc["documents"] = [{"name": "custom-erp-webshop", "title": "Custom ERP to Web Shop",
                         "source_label": "Custom", "target_label": "Shop",
                         "pairs": {"customer": {"target_label": "Webshop"}}}]
    spec = parse_dataflow(doc, "flow.yaml")
    text = docs.render_dataflow(spec, document=spec.documents[0])
    heading = "Custom ERP to Web Shop Dataflow"
    assert text.startswith(f"{'=' * len(heading)}\n{heading}\n{'=' * len(heading)}\n")
    assert "Every Custom Customer will be synchronized with a Webshop Customer." in text
    assert "Every Custom Order will be synchronized with a Shop Order." in text
    assert "     - Shop Data Type\n" in text and "     - Webshop Data Type\n" in text
    doc["documents"][0]["pairs"] = {"invoice": {"target_label": "X"}}
    with pytest.raises(Exception, match="document custom-erp-webshop: pairs: 'invoice' is "
                                        "not a pair of this dataflow"):
        parse_dataflow(doc, "flow.yaml")


@pytest.mark.parametrize("config,message", [
    (None, "no such config file"),
    ({"systems": {"customerp": {"type": "customerp"}}}, "systems.customerp.base_url is missing"),
    ({"link_store": "sqlite:///x.db", "sytems": {}}, "unknown key(s) sytems"),
])
def test_config_errors_exit_2_and_name_the_field(tmp_path, capsys, config, message):
    path = tmp_path / "talksync.yaml"
    if config is not None:
        path.write_text(yaml.safe_dump(config))
    assert cli.main(["run", "customerp-customwebshop", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_unknown_dataflow_and_pair_exit_2(harness, capsys):
    assert cli.main(["run", "no-such-flow", "--config", harness.config]) == 2
    assert "unknown dataflow 'no-such-flow'; available: customerp-customwebshop" in \
        capsys.readouterr().err
    assert cli.main(["run", "customerp-customwebshop", "--config", harness.config,
                     "--pairs", "customer,invoice"]) == 2
    assert "--pairs: unknown pair(s) invoice" in capsys.readouterr().err


def test_unreachable_system_fails_the_run_with_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ERP_KEY", "k")
    monkeypatch.setenv("SHOP_KEY", "k")
    config = {"link_store": f"sqlite:///{tmp_path}/links.db", "runs_dir": str(tmp_path / "runs"),
              "systems": {
                  "customerp": {"type": "customerp", "base_url": "http://127.0.0.1:9/erp/v1",
                                "api_key": "${ERP_KEY}", "timeout_s": 2, "max_retries": 1},
                  "customwebshop": {"type": "customwebshop", "base_url":
                                    "http://127.0.0.1:9/api/v1", "api_key": "${SHOP_KEY}",
                                    "max_retries": 1}}}
    path = tmp_path / "talksync.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["run", "customerp-customwebshop", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "systems.customerp could not be reached at http://127.0.0.1:9/erp/v1" in err
    assert "systems.customwebshop could not be reached at http://127.0.0.1:9/api/v1" in err
    assert "customerp-customwebshop not run: customerp and customwebshop cannot be read now" \
        in err


def test_a_run_loads_its_config_once(harness, monkeypatch):
    """The command loads the config once and passes it on: the pre-flight, each dataflow's
    settings and the pipeline use that copy, never the file again (issue 17, point 4)."""
    loaded = []
    parse_config = config_module.parse_config
    monkeypatch.setattr(config_module, "parse_config",
                        lambda data, path="<config>": loaded.append(path) or
                        parse_config(data, path))
    status, section = harness.run("--plan")
    assert status == cli.EXIT_OK, section
    assert loaded == [harness.config]


def test_pairs_runs_only_the_named_pairs(harness):
    products_before = len(harness.list_all("customwebshop", "products"))
    status, report = harness.run("--pairs", "customer")
    assert status == 0
    assert list(report["pairs"]) == ["customer"]
    assert report["pairs"]["customer"]["created_in_target"] > 100
    assert len(harness.list_all("customwebshop", "products")) == products_before


def test_full_rescan_reads_everything_and_writes_nothing_new(synced_harness):
    harness = synced_harness
    harness.clear_logs()
    status, report = harness.run("--full")
    assert status == 0
    assert report["pairs"]["customer"]["read_source"] == len(
        harness.list_all("customerp", "Customers"))
    assert harness.writes("customwebshop") == {} and harness.writes("customerp") == {}


def test_every_repeats_runs_with_progress_until_stopped(harness):
    runs = pathlib.Path(yaml.safe_load(open(harness.config))["runs_dir"])
    process = _talksync("run", "customerp-customwebshop", "--config", harness.config,
                        "--every", "10", env=harness.sandbox.environ())
    try:
        _wait_for(lambda: len(list(runs.glob("*/report.json"))) >= 2, timeout=240)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert out.count("customerp-customwebshop — sync run") >= 2
    assert "customer: read 250 Customers from customerp (all)" in err
    assert "customer: wrote 100 changes to customwebshop" in err
    assert "customer: committed" in err
    reports = sorted(runs.glob("*/report.json"))
    second = json.loads(reports[1].read_text())["dataflows"][0]
    assert all(counts["created_in_target"] == 0 for counts in second["pairs"].values())


def test_sandbox_serve_writes_a_config_and_serves_until_stopped(tmp_path):
    state = tmp_path / "state"
    process = _talksync("sandbox", "serve", "--base-port", "0", "--state", str(state),
                        "--businessnxt-customer-table", "associate")
    try:
        _wait_for(lambda: (state / "talksync.yaml").exists(), timeout=60)
        config = yaml.safe_load((state / "talksync.yaml").read_text())
        assert config["systems"]["businessnxt"]["customer_table"] == "associate"
        url = config["systems"]["customwebshop"]["base_url"].rsplit("/api/v1", 1)[0]
        assert requests.get(f"{url}/_sandbox/requests", timeout=10).status_code == 200
        assert config["systems"]["customerp"]["api_key"].startswith("sbx_customerp_")
        assert set(config["systems"]) == {"customwebshop", "customerp", "businesscentral",
                                          "businessnxt", "exact"}
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "export" not in out and f"talksync run --config {state / 'talksync.yaml'}" in out
    assert (state / "customwebshop.json").exists() and (state / "customerp.json").exists()
