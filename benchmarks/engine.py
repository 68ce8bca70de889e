"""P1 engine: planning N source entities against N target entities and N links, no HTTP.

Three variants of the same work, each run as its own process (``--variant``):

* ``engine``: talksync's own transforms, LookUpLinks (links from a SQLite link store, the way a
  run reads them, each side where it is generated) and PlanSync (group, read-failure gate,
  three-way merge), over entities generated inside the pipeline;
* ``floor``: Beam's floor, the same generated entities and links through one CoGroupByKey by
  link id and nothing else;
* ``python``: a plain-Python reference of the same planning: links looked up in the same store
  in the same batches, a dict for the groups, :func:`~core.planner.plan_group` per group.

Every entity is linked; every 10th source and every 10th (other) target has one edited
property, so a fifth of the plans update one side. ``--prepare`` writes the N links into the
store first (not timed: they are there before any real run starts).

Usage: ``python -m benchmarks.engine --variant engine --n 100000 --store /tmp/p1/links.db``
"""

from __future__ import annotations

import argparse
import datetime
import time
import typing

from benchmarks.common import customer_view, quiet_logs, report

DATAFLOW = "customerp-customwebshop"
PAIR = "customer"
PAIR_KEY = f"{DATAFLOW}/{PAIR}"
_CHUNK = 5_000
#: ids per link-store look-up, as LookUpLinks batches them
_LOOKUP_BATCH = 500
_MODIFIED = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def base_view(i: int) -> dict:
    """Entity ``i``'s canonical customer view as both sides had it after the last sync."""
    return customer_view(i)


def source_view(i: int) -> dict:
    view = base_view(i)
    if i % 10 == 1:
        view["company_name"] += " (ny)"
    return view


def target_view(i: int) -> dict:
    view = base_view(i)
    if i % 10 == 2:
        view["phone"] = f"+47 {90000000 + i}"
    return view


def entities(side: str, start: int, stop: int):
    from core.planner import Entity
    view = source_view if side == "source" else target_view
    prefix = "S" if side == "source" else "T"
    for i in range(start, stop):
        yield Entity(side, f"{prefix}{i}", view(i), _MODIFIED, False, None)


def links(start: int, stop: int):
    from core.model import Link
    for i in range(start, stop):
        snapshot = base_view(i)
        yield Link(pair=PAIR_KEY, link_id=f"s:S{i}", source_id=f"S{i}", target_id=f"T{i}",
                   snapshot_source=snapshot, snapshot_target=snapshot, version=1)


def expected_outcomes(n: int) -> dict:
    updated = sum(1 for i in range(n) if i % 10 in (1, 2))
    return {"updated": updated, "unchanged": n - updated}


def prepare(store_url: str, n: int) -> None:
    """Writes the N links (committed, version 1) into the store."""
    from connectors.stores import open_link_store
    with open_link_store(store_url) as store:
        for start in range(0, n, _CHUNK):
            store.commit([link.replace(version=0)
                          for link in links(start, min(n, start + _CHUNK))])


def _context(store_url: str):
    from core.model import SystemConfig
    from core.spec import get_dataflow
    from transforms.common import PairContext
    spec = get_dataflow(DATAFLOW)
    return PairContext(
        dataflow=DATAFLOW, pair=spec.pair(PAIR),
        source_system=SystemConfig("customerp", "customerp", "http://unused.invalid"),
        target_system=SystemConfig("customwebshop", "customwebshop", "http://unused.invalid"),
        link_store=store_url, run_id="bench")


def _starts(p, n: int, label: str):
    import apache_beam as beam
    return p | f"Chunks {label}" >> beam.Create(list(range(0, n, _CHUNK)))


def _count(label: str):
    import apache_beam as beam
    return beam.metrics.Metrics.counter("bench", label)


def _counted(pcoll, label: str, key):
    import apache_beam as beam

    def count(element, _key=key):
        _count(_key(element)).inc()
    return pcoll | label >> beam.Map(count)


def _run_pipeline(build) -> tuple[float, dict]:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    started = time.perf_counter()
    p = beam.Pipeline(runner="FnApiRunner", options=PipelineOptions([]))
    build(p)
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - started
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace("bench"))["counters"]}
    return seconds, counters


def run_floor(n: int, store_url: str) -> tuple[float, dict]:
    import apache_beam as beam

    def build(p):
        def generate(side):
            return (_starts(p, n, side) | f"Generate {side}" >> beam.FlatMap(
                lambda start, side=side: entities(side, start, min(n, start + _CHUNK)))
                | f"Key {side}" >> beam.Map(
                    lambda e: (f"s:S{e.id[1:]}", e)))
        sources, targets = generate("source"), generate("target")
        stored = (_starts(p, n, "links")
                  | "Generate links" >> beam.FlatMap(
                      lambda start: links(start, min(n, start + _CHUNK))
                  ).with_output_types(typing.Any)
                  | "Key links" >> beam.Map(lambda link: (link.link_id, link)))
        joined = ({"source": sources, "target": targets, "link": stored}
                  | "CoGroupByKey" >> beam.CoGroupByKey())
        _counted(joined, "Count groups", lambda _: "groups")
    return _run_pipeline(build)


def run_engine(n: int, store_url: str) -> tuple[float, dict]:
    import apache_beam as beam

    from transforms import plan
    ctx = _context(store_url)

    def build(p):
        # as transforms/sync.py: each side looked up where it is made (its entities stand for
        # the pipeline's mapped ones), both sides' keyed items flattened, and planned behind
        # the read-failure gate (here: no read failed)
        keyed = [_starts(p, n, side) | f"Generate {side}" >> beam.FlatMap(
            lambda start, side=side: entities(side, start, min(n, start + _CHUNK)))
            | f"LookUpLinks {side}" >> plan.LookUpLinks(ctx)
            for side in ("source", "target")]
        failed_reads = p | "No failed reads" >> beam.Create([])
        planned = (keyed | "Both sides" >> beam.Flatten().with_output_types(plan.KEYED_ITEM)
                   | "Plan" >> plan.PlanSync(ctx, failed_reads=failed_reads))
        _counted(planned.plans, "Count plans", lambda plan_: plan_.outcome)
        _counted(planned.dead_letters, "Count rejections", lambda _: "rejected")
    return _run_pipeline(build)


def run_python(n: int, store_url: str) -> tuple[float, dict]:
    """The same planning in plain Python: batched link look-ups, a dict of groups, plan_group."""
    from connectors.stores import open_link_store
    from core.planner import plan_group
    ctx = _context(store_url)
    started = time.perf_counter()
    groups: dict = {}
    with open_link_store(store_url) as store:
        for side in ("source", "target"):
            lookup = store.lookup_by_source if side == "source" else store.lookup_by_target
            for start in range(0, n, _LOOKUP_BATCH):
                batch = list(entities(side, start, min(n, start + _LOOKUP_BATCH)))
                found = lookup(PAIR_KEY, [e.id for e in batch])
                for e in batch:
                    link = found[e.id]
                    group = groups.setdefault(link.link_id, ([], [], {}))
                    group[0 if side == "source" else 1].append(e)
                    group[2][link.link_id] = link
    counts: dict = {}
    for sources, targets, by_id in groups.values():
        plans, _ = plan_group(ctx.pair, PAIR_KEY, sources, targets, by_id.values(), "bench")
        for plan_ in plans:
            counts[plan_.outcome] = counts.get(plan_.outcome, 0) + 1
    return time.perf_counter() - started, counts


VARIANTS = {"floor": run_floor, "engine": run_engine, "python": run_python}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS) + ["prepare"], required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--store", required=True, help="SQLite file of the links")
    args = parser.parse_args(argv)
    quiet_logs()
    url = f"sqlite:///{args.store}"
    if args.variant == "prepare":
        started = time.perf_counter()
        prepare(url, args.n)
        report({"variant": "prepare", "n": args.n, "seconds": time.perf_counter() - started})
        return
    seconds, counts = VARIANTS[args.variant](args.n, url)
    report({"variant": args.variant, "n": args.n, "seconds": round(seconds, 3),
            "counts": counts})


if __name__ == "__main__":
    main()
