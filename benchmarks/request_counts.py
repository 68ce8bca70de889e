"""P2 requests: how many API requests an initial sync and a no-op rerun make, per system.

Cases (``--case``), each against a fresh sandbox (seed 42) topped up through the systems' own
APIs before the request logs are cleared:

* ``customers``: 1,000 live webshop customers, dataflow customwebshop-businesscentral, pair
  customer (the webshop's customers go to Business Central, BC's own customers come back);
* ``products``: 1,000 ERP products, dataflow customerp-customwebshop, pair product.

The sandbox's request log counts every API request per system. The comparison is a per-record
sync: one GET (does the counterpart exist, what does it hold) and one POST or PATCH per entity
it writes, plus the same list reads; so ``per_record = reads + 2 × writes`` per system.
Target per system: ``read pages + ⌈writes / batch⌉ + 5`` and ≥ 50× fewer than per-record; the
rerun with no edits: 0 writes and ≤ 2 requests per pair and system, besides the pre-flight
check every run makes first (one cheap read per system, decision 0012), which is measured on
its own and subtracted.

Usage: ``python -m benchmarks.request_counts --case customers --n 1000``
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import time

import requests

from benchmarks.common import quiet_logs, report, workdir

#: dataflow, pair, the system the N records are added to, the systems served
CASES = {
    "customers": ("customwebshop-businesscentral", "customer", "customwebshop",
                  ("customwebshop", "businesscentral")),
    "products": ("customerp-customwebshop", "product", "customerp",
                 ("customwebshop", "customerp")),
}
_WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


def _connector_class(system: str):
    from connectors.businesscentral import BusinessCentralConnector
    from connectors.customerp import CustomErpConnector
    from connectors.customwebshop import CustomWebshopConnector
    return {"customwebshop": CustomWebshopConnector, "customerp": CustomErpConnector,
            "businesscentral": BusinessCentralConnector}[system]


def top_up_webshop_customers(harness, n: int) -> None:
    """Adds customers through ``POST /customers:batch`` until the webshop has ``n`` live ones."""
    live = [c for c in harness.list_all("customwebshop", "customers") if not c["deleted"]]
    missing = n - len(live)
    for start in range(0, missing, 100):
        operations = [{"method": "POST", "body": {
            "email": f"bench.customer{i}@example.com", "first_name": "Bench",
            "last_name": f"Kunde {i}", "company_name": f"Bench Kunde {i} AS",
            "phone": f"+47 {40000000 + i}", "vat_number": None,
            "address": {"line1": f"Storgata {i % 200 + 1}", "line2": None,
                        "postal_code": f"{i % 9000 + 1000}", "city": "Oslo", "country": "NO"}}}
            for i in range(start, min(missing, start + 100))]
        answer = _post_batch(harness, operations)
        failed = [r for r in answer["results"] if r["status"] >= 300]
        if failed:
            raise RuntimeError(f"seeding webshop customers failed: {failed[:3]}")


def _post_batch(harness, operations) -> dict:
    response = requests.post(f"{harness.sandbox.url('customwebshop')}/customers:batch",
                             json={"operations": operations}, timeout=60,
                             headers={"X-Api-Key": harness.sandbox.api_key("customwebshop")})
    response.raise_for_status()
    return response.json()


def top_up_erp_products(harness, n: int) -> None:
    """Adds products through ``POST /Products`` until the ERP has ``n``."""
    have = len(harness.list_all("customerp", "Products"))
    for i in range(n - have):
        harness.post("customerp", "Products", {
            "ItemNo": f"BX-{i:05d}", "Description": f"Bench vare {i}",
            "Gtin": None, "SalesPrice": 100 + i % 50, "CostPrice": 40,
            "VatCode": "3", "StockQty": i % 100, "Unit": "pcs"})


def _log(sandbox, systems) -> dict:
    counts = {}
    for system in systems:
        log = sandbox.requests(system)
        by_method = log["by_method"]
        counts[system] = {"requests": log["count"], "by_method": by_method,
                          "writes": sum(by_method.get(m, 0) for m in _WRITE_METHODS)}
        sandbox.clear_requests(system)
    return counts


def measure(case: str, n: int, workdir: pathlib.Path) -> dict:
    from sandbox.server import Sandbox
    from tests.conftest import SyncHarness
    dataflow, pair, grown, systems = CASES[case]
    with Sandbox(state_dir=workdir / "sandbox", base_port=0, systems=systems,
                 seed=42) as sandbox:
        os.environ.update(sandbox.environ())
        harness = SyncHarness(sandbox, workdir)
        if case == "customers":
            top_up_webshop_customers(harness, n)
        else:
            top_up_erp_products(harness, n)
        _log(sandbox, systems)
        started = time.perf_counter()
        status, first = harness.run("--pairs", pair, dataflow=dataflow)
        first_s = time.perf_counter() - started
        if status != 0:
            raise RuntimeError(f"initial sync exited {status}: {first}")
        initial = _log(sandbox, systems)
        status, rerun_report = harness.run("--pairs", pair, dataflow=dataflow)
        if status != 0:
            raise RuntimeError(f"rerun exited {status}: {rerun_report}")
        rerun = _log(sandbox, systems)
        # the pre-flight check every run makes first (one cheap read per system, decision
        # 0012): a fixed cost per run, counted apart from the sync's own requests
        from pipelines.config import load_config
        from pipelines.preflight import preflight
        preflight(load_config(harness.config), systems)
        check = _log(sandbox, systems)
    counters = first["pairs"][pair]
    source, target = systems_of(dataflow)
    reads = {source: counters["read_source"], target: counters["read_target"]}
    writes_to = {target: counters["created_in_target"] + counters["updated_target"],
                 source: counters["created_in_source"] + counters["updated_source"]}
    per_system = {}
    for system in systems:
        connector = _connector_class(system)     # rows per page, writes per request
        pages = math.ceil(reads[system] / connector.default_page_size) or 1
        target_max = pages + math.ceil(writes_to[system] / connector.max_batch_size) + 5
        per_record = initial[system]["requests"] - initial[system]["writes"] \
            + 2 * writes_to[system]
        per_system[system] = {
            "read": reads[system], "written": writes_to[system], "pages": pages,
            "requests": initial[system]["requests"], "write_requests": initial[system]["writes"],
            "target_max": target_max, "per_record": per_record,
            "rerun_requests": rerun[system]["requests"] - check[system]["requests"],
            "check_requests": check[system]["requests"],
            "rerun_writes": rerun[system]["writes"]}
    return {"case": case, "dataflow": dataflow, "pair": pair, "n": n, "from": grown,
            "to": next(system for system in systems if system != grown),
            "initial_s": round(first_s, 3), "counters": counters,
            "rerun_counters": rerun_report["pairs"][pair], "systems": per_system}


def systems_of(dataflow: str) -> tuple[str, str]:
    from core.spec import get_dataflow
    spec = get_dataflow(dataflow)
    return spec.source.system, spec.target.system


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args(argv)
    quiet_logs()
    with workdir() as folder:
        report(measure(args.case, args.n, folder))


if __name__ == "__main__":
    main()
