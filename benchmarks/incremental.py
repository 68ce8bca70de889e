"""P4 incremental (and P5 memory): 100 changed entities among 100k (or 1M) linked ones.

Set-up (not timed): a sandbox (seed 42) whose webshop and ERP each get ``--n`` more customers,
written into the emulators' state files with last year's timestamps, and a link store with the
``--n`` links between them written straight into SQLite (snapshots: each side's canonical view,
checked against the pair's real mapper on a sample), and watermarks at the present. The
emulators flush their state only when stopped. Then ``--changed`` customers are edited through the
APIs, half in each system.

Measured: ``talksync run customerp-customwebshop --pairs customer`` (incremental, the default
runner: Beam's in-memory engine) as a child process from interpreter start to exit, its peak
RSS, and every read the run makes of the link store: calls and links returned per method,
counted by wrapping the store's read methods in the child.
Targets: link reads O(changed), wall < 30 s, peak RSS ≤ 1.5 GB.

Usage: ``python -m benchmarks.incremental --n 100000 --changed 100``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import time

from benchmarks.common import CaseRun, customer_view, quiet_logs, report, run_case, workdir

DATAFLOW = "customerp-customwebshop"
PAIR = "customer"
_OLD = "2025-06-01T00:00:00.000000Z"
#: the link store's read methods, counted in the measured run
_READS = ("lookup_by_source", "lookup_by_target", "lookup_refs_by_source",
          "lookup_refs_by_target", "lookup_by_id", "pending", "open_dead_letters",
          "get_watermark", "reserve", "reserve_many", "read_state")


def webshop_customer(i: int) -> dict:
    return {"id": f"cus_b{i:06d}", "email": f"bench{i}@example.com", "first_name": "Bench",
            "last_name": f"Kunde {i}", "company_name": f"Bench Kunde {i} AS",
            "phone": f"+47 {40000000 + i}", "vat_number": None,
            "address": {"line1": f"Storgata {i % 200 + 1}", "line2": None,
                        "postal_code": f"{i % 9000 + 1000}", "city": "Oslo", "country": "NO"},
            "updated_at": _OLD, "deleted": False}


def erp_customer(i: int) -> dict:
    return {"CustomerNo": f"B{i:06d}", "Name": f"Bench Kunde {i} AS", "OrgNo": None,
            "Email": f"bench{i}@example.com", "Phone": f"+47 {40000000 + i}",
            "Street": f"Storgata {i % 200 + 1}", "Street2": None,
            "ZipCode": f"{i % 9000 + 1000}", "City": "Oslo", "CountryCode": "NO",
            "ModifiedAt": _OLD}


def _grow_state(path: pathlib.Path, resource: str, rows) -> None:
    """Appends ``rows`` (version 1) to ``resource`` in an emulator's state file."""
    state = json.loads(path.read_text(encoding="utf-8"))
    state["collections"][resource] += [{"version": 1, "entity": row} for row in rows]
    path.write_text(json.dumps(state), encoding="utf-8")


def canonical_view(i: int) -> dict:
    """Customer ``i``'s canonical view, the same from both systems (what the pair's mapper
    makes of :func:`webshop_customer` and :func:`erp_customer`; :func:`set_up` checks that on
    a sample, so a change of the mapping cannot leave the benchmark on stale snapshots)."""
    return customer_view(i, name="bench", company="Bench Kunde")


def _check_views(n: int) -> None:
    """Raises if the pair's mapper no longer makes :func:`canonical_view` of the records."""
    from core.mapping import PairMapper
    from core.spec import get_dataflow
    mapper = PairMapper(get_dataflow(DATAFLOW).pair(PAIR))
    for i in sorted({0, 1, n // 2, n - 1} | set(range(0, n, max(1, n // 97)))):
        shop, erp = webshop_customer(i), erp_customer(i)
        views = (mapper.view("source", {k: v for k, v in erp.items() if k != "ModifiedAt"},
                             None),
                 mapper.view("target", {k: v for k, v in shop.items()
                                        if k not in ("id", "updated_at", "deleted")}, None))
        if any(view != canonical_view(i) for view in views):
            raise RuntimeError(f"benchmarks.incremental.canonical_view({i}) is not what the "
                               f"mapper makes of customer {i}: {views}")


def _fill_links(url: str, n: int) -> None:
    """The ``n`` committed links (version 1), inserted straight into the SQLite file in one
    transaction: a link store filled the way commits leave it, in seconds even at 1M (through
    :meth:`~connectors.linkstore.LinkStore.commit`, which checks each link's version, 1M
    links take many minutes)."""
    import sqlite3

    from connectors.stores import open_link_store
    from core.model import LINKED, encode_values
    with open_link_store(url):
        pass                                    # creates the file and its schema
    pair_key = f"{DATAFLOW}/{PAIR}"
    now = datetime.datetime.now(datetime.UTC).isoformat()

    def rows():
        for i in range(n):
            shop, erp = webshop_customer(i), erp_customer(i)
            snapshot = encode_values(canonical_view(i))
            yield (pair_key, f"s:{erp['CustomerNo']}", erp["CustomerNo"], shop["id"], LINKED,
                   snapshot, snapshot, None, None, None, 1, now)
    db = sqlite3.connect(url[len("sqlite:///"):])
    try:
        with db:
            db.executemany("INSERT INTO links (pair, link_id, source_id, target_id, state, "
                           "snapshot_source, snapshot_target, source_etag, target_etag, "
                           "attempt_id, version, updated_at) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    finally:
        db.close()


def set_up(workdir: pathlib.Path, n: int):
    """The grown sandbox's state and the link store; returns the store's URL."""
    from connectors.stores import open_link_store
    from sandbox.server import Sandbox
    _check_views(n)
    state = workdir / "sandbox"
    Sandbox(state_dir=state, base_port=0, systems=("customwebshop", "customerp"),
            seed=42).start().stop()            # writes the seed state files
    _grow_state(state / "customwebshop.json", "customers",
                (webshop_customer(i) for i in range(n)))
    _grow_state(state / "customerp.json", "Customers", (erp_customer(i) for i in range(n)))
    url = f"sqlite:///{state / 'links.db'}"
    _fill_links(url, n)
    with open_link_store(url) as store:
        now = datetime.datetime.now(datetime.UTC).isoformat()
        for system in ("customwebshop", "customerp"):
            store.advance_watermark(DATAFLOW, PAIR, system, now)
    return url


def measure(n: int, changed: int, workdir: pathlib.Path, in_process: bool = False) -> dict:
    """Set-up, edits, then the run: in a child process (timed, its RSS its own), or with
    ``in_process`` in this one (a smoke test's shortcut: wall and RSS then mean nothing)."""
    from sandbox.server import Sandbox
    from tests.conftest import SyncHarness
    started = time.perf_counter()
    url = set_up(workdir, n)
    setup_s = time.perf_counter() - started
    time.sleep(1.0)   # the edits come after the watermarks, by the emulators' clocks too
    # the emulators flush their state only when stopped: at 1M rows a flush is a JSON dump of
    # hundreds of MB that would stall their answers, a cost of the emulator, not of talksync
    unflushed = {"state_flush_s": 24 * 3600.0}
    with Sandbox(state_dir=workdir / "sandbox", base_port=0,
                 systems=("customwebshop", "customerp"), seed=42,
                 options={"customwebshop": unflushed, "customerp": unflushed}) as sandbox:
        os.environ.update(sandbox.environ())
        harness = SyncHarness(sandbox, workdir)
        for i in range(0, changed, 2):
            harness.patch_shop("customers", f"cus_b{i * 7 % n:06d}",
                               {"phone": f"+47 {90000000 + i}"})
        for i in range(1, changed, 2):
            harness.put_erp("Customers", f"B{i * 7 % n:06d}", {"Name": f"Bench Kunde {i} ASA"})
        harness.clear_logs()
        if in_process:
            started = time.perf_counter()
            run = CaseRun(sync(str(sandbox.config_path)), time.perf_counter() - started, 0.0)
        else:
            run = run_case("incremental", "--sync", str(sandbox.config_path))
        requests = {s: sandbox.requests(s)["by_method"] for s in ("customwebshop", "customerp")}
    return {"n": n, "changed": changed, "setup_s": round(setup_s, 1),
            "wall_s": round(run.wall_s, 3), "sync_peak_rss_mb": run.peak_rss_mb,
            "link_reads": run.result["link_reads"], "counters": run.result["counters"],
            "run_s": run.result["duration_s"], "requests": requests, "store": url}


@contextlib.contextmanager
def counting_link_reads():
    """Counts, while active, every read of a SQLite link store in this process: a dict of
    method name -> [calls, links (or values) returned]."""
    from connectors.sqlite_store import SqliteLinkStore
    reads: dict = {}
    originals = {name: getattr(SqliteLinkStore, name) for name in _READS
                 if hasattr(SqliteLinkStore, name)}

    def counted(name, method):
        def wrapper(self, *args, **kwargs):
            result = method(self, *args, **kwargs)
            count = reads.setdefault(name, [0, 0])
            count[0] += 1
            count[1] += len(result) if isinstance(result, (dict, list)) else 1
            return result
        return wrapper

    for name, method in originals.items():
        setattr(SqliteLinkStore, name, counted(name, method))
    try:
        yield reads
    finally:
        for name, method in originals.items():
            setattr(SqliteLinkStore, name, method)


def sync(config: str) -> dict:
    """The measured run: `talksync run` with the store's reads counted."""
    from pipelines import cli
    report_path = pathlib.Path(config).parent / "incremental-report.json"
    with counting_link_reads() as reads:
        status = cli.main(["run", DATAFLOW, "--config", config, "--pairs", PAIR,
                           "--report", str(report_path)])
    if status != 0:
        raise RuntimeError(f"talksync run exited {status}")
    section = json.loads(report_path.read_text())["dataflows"][0]
    return {"counters": section["pairs"][PAIR], "duration_s": section["duration_s"],
            "link_reads": {name: {"calls": calls, "links": links}
                           for name, (calls, links) in sorted(reads.items())}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--sync", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_logs()
    if args.sync:
        report(sync(args.sync))
        return
    with workdir() as folder:
        report(measure(args.n, args.changed, folder))


if __name__ == "__main__":
    main()
