"""P3 rate limits: write throughput against a system's rate limit, and the 429s it costs.

The Custom ERP has no batch endpoint, so every create is one request and its limit (600
requests per 60 s per API key) bounds the write throughput. The sandbox's fixed-window limiter
is turned on scaled in time (``--scale 4``: 150 requests per 15 s, the same 10 requests/s) for
the ERP, and the webshop's real limit (20 per second) for the webshop. The sync is
customerp-customwebshop, pair customer, after the webshop is topped up to ``--n`` customers
(each one the ERP lacks is a create there).

Throughput is measured from the ERP's request log: a client that uses the limit perfectly
sends R requests in ``(⌈R / limit⌉ - 1) × window`` seconds (the last window's burst takes no
time), so ``efficiency = that bound / (last request - first request)``. Target: ≥ 90 %, and
at most one 429 per window.

Usage: ``python -m benchmarks.rate_limits --n 450 --scale 4``
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import time

from benchmarks.common import quiet_logs, report, workdir
from benchmarks.request_counts import top_up_webshop_customers

ERP_LIMIT, ERP_WINDOW_S = 600, 60.0     # sandbox/customerp.py system_rate_limit


def measure(n: int, limit: int, window: float, workdir: pathlib.Path) -> dict:
    """The customer sync into an ERP limited to ``limit`` requests per ``window`` seconds."""
    from sandbox.server import Sandbox
    from sandbox.wire import parse_timestamp
    from tests.conftest import SyncHarness
    with Sandbox(state_dir=workdir / "sandbox", base_port=0,
                 systems=("customwebshop", "customerp"), seed=42) as sandbox:
        os.environ.update(sandbox.environ())
        harness = SyncHarness(sandbox, workdir)
        top_up_webshop_customers(harness, n)
        sandbox.set_faults("customerp", rate_limit={"limit": limit, "window_s": window})
        sandbox.set_faults("customwebshop", rate_limit=True)
        harness.clear_logs()
        started = time.perf_counter()
        status, section = harness.run("--pairs", "customer")
        seconds = time.perf_counter() - started
        if status != 0:
            raise RuntimeError(f"sync exited {status}: {section}")
        erp, shop = sandbox.requests("customerp"), sandbox.requests("customwebshop")
    if erp["count"] > len(erp["log"]):
        raise RuntimeError(f"the ERP's log kept {len(erp['log'])} of {erp['count']} requests; "
                           "use a smaller --n")
    admitted = [e for e in erp["log"] if e["status"] != 429]
    moments = [parse_timestamp(e["at"]) for e in admitted]
    span = (max(moments) - min(moments)).total_seconds()
    windows = math.ceil(len(admitted) / limit)
    bound_s = (windows - 1) * window
    return {"n": n, "limit": limit, "window_s": window, "seconds": round(seconds, 3),
            "erp_requests": len(admitted), "erp_writes": sum(
                1 for e in admitted if e["method"] in ("POST", "PUT")),
            "erp_429": sum(1 for e in erp["log"] if e["status"] == 429),
            "windows": windows, "span_s": round(span, 3), "bound_s": bound_s,
            "efficiency": round(bound_s / span, 4) if span else None,
            "requests_per_s": round(len(admitted) / span, 3) if span else None,
            "shop_requests": shop["count"],
            "shop_429": sum(1 for e in shop["log"] if e["status"] == 429),
            "counters": section["pairs"]["customer"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=450, help="live webshop customers")
    parser.add_argument("--scale", type=float, default=4.0,
                        help="the ERP's window and limit divided by this")
    args = parser.parse_args(argv)
    quiet_logs()
    with workdir() as folder:
        report(measure(args.n, int(ERP_LIMIT / args.scale), ERP_WINDOW_S / args.scale, folder))


if __name__ == "__main__":
    main()
