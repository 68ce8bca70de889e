"""Safeguards of a run, end to end against the sandbox: the circuit breaker for mass changes
and the run lock against two runs of one dataflow at once."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from decimal import Decimal

import yaml

from connectors.stores import open_link_store
from tests.conftest import group_by
from tests.test_sync_customerp_customwebshop import _assert_one_to_one, _writes
from transforms.runlock import lock_key

DATAFLOW = "customerp-customwebshop"
REPO = pathlib.Path(__file__).resolve().parents[1]


def _edit_erp_prices(harness, count: int) -> list[str]:
    shop = group_by(harness.list_all("customwebshop", "products"), "sku")
    skus = sorted(sku for sku in group_by(harness.list_all("customerp", "Products"), "ItemNo")
                  if sku in shop)[:count]
    for n, sku in enumerate(skus):
        harness.put_erp("Products", sku, {"SalesPrice": Decimal("1000.00") + n})
    return skus


def _shop_prices(harness, skus) -> dict:
    shop = group_by(harness.list_all("customwebshop", "products"), "sku")
    return {sku: Decimal(str(shop[sku][0]["price"])) for sku in skus}


def test_mass_updates_are_held_back_until_confirmed(synced_harness, capsys):
    harness = synced_harness
    skus = _edit_erp_prices(harness, 6)
    before = _shop_prices(harness, skus)
    harness.clear_logs()

    status, report = harness.run("--max_updates_per_pair=5")

    assert status == 1, report
    assert "product: 6 updates planned" in capsys.readouterr().err
    assert report["held_updates"] == {"product": 6}
    # the records of those updates (the edited ERP products, and their webshop counterparts
    # when the read overlap brings them too) are held back, counted nowhere else
    assert report["pairs"]["product"]["held_back"] >= 6
    assert report["pairs"]["product"]["updated"] == 0
    assert harness.writes("customwebshop") == {} and _shop_prices(harness, skus) == before

    # held changes are not forgotten: the next run sees them again (watermark held back)
    status, report = harness.run("--max_updates_per_pair=5")
    assert status == 1 and report["held_updates"] == {"product": 6}
    assert "--confirm_mass_changes" in capsys.readouterr().err

    status, report = harness.run("--max_updates_per_pair=5", "--confirm_mass_changes")
    assert status == 0, report
    assert report["pairs"]["product"]["updated_target"] == 6
    assert report["pairs"]["product"]["held_back"] == 0 and report["held_updates"] == {}
    assert report["pairs"]["product"]["updated"] >= 6
    assert _shop_prices(harness, skus) == {sku: Decimal("1000.00") + n
                                           for n, sku in enumerate(skus)}
    status, report = harness.run("--max_updates_per_pair=5")
    assert status == 0 and _writes(report) == {}


def test_updates_within_the_limit_are_not_held(synced_harness):
    harness = synced_harness
    _edit_erp_prices(harness, 5)
    status, report = harness.run("--max_updates_per_pair=5")
    assert status == 0 and report["pairs"]["product"]["updated_target"] == 5


def _start_run(harness) -> subprocess.Popen:
    env = {**os.environ, **harness.sandbox.environ(), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", DATAFLOW, "--config", harness.config],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_run_of_the_dataflow_at_once_is_refused_and_nothing_duplicates(harness):
    harness.sandbox.set_faults("customwebshop", latency_ms=20)     # a first run of some length
    store_url = yaml.safe_load(open(harness.config))["link_store"]
    first = _start_run(harness)
    try:
        deadline = time.monotonic() + 120
        with open_link_store(store_url) as store:
            while store.read_state(lock_key(DATAFLOW)) is None:
                assert first.poll() is None, first.communicate()
                assert time.monotonic() < deadline, "the first run never took the lock"
                time.sleep(0.05)
        status, report = harness.run()
        assert status == 1 and report == {}
        out, err = first.communicate(timeout=600)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, err
    harness.sandbox.set_faults("customwebshop")
    with open_link_store(store_url) as store:
        assert store.read_state(lock_key(DATAFLOW)) is None       # given back at the end
    _assert_one_to_one(harness)
    status, report = harness.run()
    assert status == 0 and _writes(report) == {}
