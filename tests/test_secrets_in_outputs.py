"""Secrets never leave the environment: not in output, reports, run files or the link store."""

from __future__ import annotations

import logging
import pathlib
from decimal import Decimal

import yaml

from pipelines import cli


def _every_output_file(root: pathlib.Path):
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".parquet", ".db", ".yaml",
                                              ".db-wal"):
            yield path


def test_secret_values_appear_in_no_output_of_a_run(harness, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = list(harness.sandbox.environ().values())
    assert all(len(s) > 8 for s in secrets)
    # a dead letter from a mapping error, and failed writes whose errors quote the systems
    harness.put_erp("Products", harness.list_all("customerp", "Products")[0]["ItemNo"],
                    {"StockQty": Decimal("1.5")})
    harness.sandbox.set_faults("customwebshop", error_rate=1.0, status=500, only=["POST"],
                               seed=3)
    harness.configure("customwebshop", max_retries=1)

    status, report = harness.run()
    harness.sandbox.set_faults("customwebshop")
    status_after, _ = harness.run("--plan")

    assert status == 3 and status_after in (0, 3)
    captured = capsys.readouterr()
    texts = {"stdout": captured.out, "stderr": captured.err,
             "logs": "\n".join(r.getMessage() for r in caplog.records)}
    config = yaml.safe_load(open(harness.config))
    store_file = pathlib.Path(config["link_store"].removeprefix("sqlite:///"))
    for path in list(_every_output_file(pathlib.Path(config["runs_dir"]))) + [store_file] + \
            list(harness.state.glob("report-*.json")):
        texts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    assert any("500" in text for text in texts.values())   # the failures were reported
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"


def test_plain_text_secret_in_config_is_warned_about(tmp_path, caplog, capsys):
    path = tmp_path / "talksync.yaml"
    path.write_text(yaml.safe_dump({"systems": {"customerp": {
        "type": "customerp", "base_url": "https://erp.example/erp/v1",
        "api_key": "plain-text-key-123", "token_url": "https://login.example/token"}}}))
    with caplog.at_level(logging.WARNING):
        assert cli.main(["run", "customerp-customwebshop", "--config", str(path)]) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("systems.customerp.api_key holds a secret in plain text" in w for w in warnings)
    assert not any("plain-text-key-123" in w for w in warnings)
    assert not any("token_url" in w for w in warnings)   # a URL, not a secret
