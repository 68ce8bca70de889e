"""Every benchmark of `make bench` at a tiny N, so none of them rots (the figures are not checked
against the targets here: at this size they mean nothing; BENCHMARKS.md has the real ones)."""

from __future__ import annotations

import pytest

from benchmarks import __main__ as bench
from benchmarks import engine, incremental, rate_limits, request_counts
from sandbox.server import REGISTRY, _env_name


@pytest.fixture(autouse=True)
def _sandbox_keys_restored(monkeypatch):
    """The benchmarks export the sandbox's API keys; put the environment back afterwards."""
    for system in REGISTRY:
        monkeypatch.delenv(_env_name(system), raising=False)


def test_engine_variants_plan_the_same(tmp_path):
    url = f"sqlite:///{tmp_path}/links.db"
    engine.prepare(url, 300)
    results = {name: run(300, url) for name, run in engine.VARIANTS.items()}
    expected = engine.expected_outcomes(300)
    assert results["engine"][1] == results["python"][1] == expected
    assert results["floor"][1] == {"groups": 300}
    p1 = {"n": 300, "runs": 1, "counts": expected,
          "seconds": {name: [seconds] for name, (seconds, _) in results.items()},
          "rss_mb": {name: [100.0] for name in results},
          "engine_over_floor": [1.0], "engine_over_python": [2.0]}
    assert "Engine ÷ floor: 1.00" in bench.render(_with_machine({"P1": p1}))


def test_request_counts_of_a_sync_and_its_rerun(tmp_path):
    result = request_counts.measure("customers", 310, tmp_path)
    shop, bc = result["systems"]["customwebshop"], result["systems"]["businesscentral"]
    assert shop["read"] >= 310 and bc["written"] >= shop["read"] - 30   # 30 shared
    assert bc["per_record"] > bc["requests"] > 0
    assert shop["rerun_writes"] == bc["rerun_writes"] == 0
    text = bench.render(_with_machine({"P2": {"customers": [result]}}))
    assert "| customers | businesscentral |" in text


def test_rate_limited_sync_is_measured_against_its_bound(tmp_path):
    result = rate_limits.measure(300, 150, 0.5, tmp_path)
    assert result["windows"] >= 2 and result["erp_writes"] > 240
    assert 0 < result["efficiency"] <= 1.05
    assert "| 1 |" in bench.render(_with_machine({"P3": [result]}))


def test_incremental_run_reads_only_the_changed_links(tmp_path):
    result = incremental.measure(400, 6, tmp_path, in_process=True)
    assert result["counters"]["updated_target"] == result["counters"]["updated_source"] == 3
    reads = result["link_reads"]
    # each changed entity's link: its id and state before grouping, the link once after
    assert reads["lookup_refs_by_source"]["links"] + reads["lookup_refs_by_target"]["links"] == 6
    assert reads["lookup_by_id"]["links"] == 6
    assert "Links read from the store: 6" in bench.render(_with_machine({"P4": [result]}))


def _with_machine(results: dict) -> dict:
    return {"machine": {"date": "today", "cpu": "cpu", "cores": 2, "memory_gb": 1, "os": "os",
                        "python": "3", "beam": "2"},
            "load_before": (1.0, 1.0, 1.0), "load_after": (1.0, 1.0, 1.0), **results}
