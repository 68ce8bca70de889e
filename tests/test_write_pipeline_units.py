"""The write path's transforms wired in a pipeline (FnApiRunner, in memory, a fake connector):
what each ``expand`` connects to what. Reserve -> write -> commit on three plans (a create, an
update that fails, a clash), the circuit breaker holding and passing a pair, and the
pipeline's own release of the run lock. Their DoFns one by one are tests/test_write_units.py,
tests/test_breaker.py and tests/test_runlock_units.py."""

from __future__ import annotations

import datetime

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors.errors import PermanentApiError
from connectors.stores import open_link_store
from core.model import Link, Record, WriteResult
from core.planner import CREATE_TARGET, LINK, SyncPlan, Write
from tests.write_path_fakes import recording_context
from transforms import write
from transforms.breaker import HoldMassChanges
from transforms.runlock import ReleaseRunLock, RunLock


class _Shop:
    """A webshop that creates everything and refuses every update."""

    name = "shop"
    request_count = 0

    def write(self, ops):
        return [WriteResult(ref=op.ref, record=Record("shop", op.entity, "T1", dict(op.fields),
                                                      etag="e1"))
                if op.kind == "create" else
                WriteResult(ref=op.ref, error=PermanentApiError("shop: no", status=400))
                for op in ops]

    def close(self):
        pass


def _plan(ctx, outcome, link_id, source_id, target_id=None, writes=()):
    return SyncPlan(pair=ctx.pair.name, outcome=outcome, records_read=1, writes=writes,
                    link=Link(ctx.pair_key, link_id, source_id, target_id))


def test_reserve_write_commit_wired(tmp_path, monkeypatch):
    ctx = recording_context(tmp_path)
    monkeypatch.setattr(write, "connector_for", lambda system: _Shop())
    with open_link_store(ctx.link_store) as store:
        store.commit([Link(ctx.pair_key, "t:T9", "S3", "T9")])
    changes = {"email": "ada@example.com", "company_name": "Ada"}
    plans = [
        _plan(ctx, CREATE_TARGET, "s:S1", "S1",
              writes=(Write("target", "create", changes, idempotency_key="k1"),)),
        _plan(ctx, "updated_target", "s:S2", "S2", "T2",
              writes=(Write("target", "update", {"company_name": "Bo"}, entity_id="T2",
                            etag="e0"),)),
        _plan(ctx, LINK, "s:S3", "S3", "T3"),                   # S3 is linked to T9 already
    ]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        reserved = p | beam.Create(plans) | write.ReserveLinks(ctx)
        written = reserved.plans | write.WriteChanges(ctx)
        committed = (reserved.plans, written.outcomes) | write.CommitLinks(ctx)
        assert_that(reserved.dead_letters | "reserve letters" >> beam.Map(
            lambda d: (d.entity_id, d.stage)), equal_to([("S3", "reserve")]),
            label="reserve letters")
        assert_that(written.outcomes | beam.Map(lambda kv: (kv[0], kv[1].ok)),
                    equal_to([("s:S1", True), ("s:S2", False)]), label="outcomes")
        assert_that(written.dead_letters | "write letters" >> beam.Map(
            lambda d: (d.entity_id, d.stage)), equal_to([("S2", "write")]),
            label="write letters")
        assert_that(committed.links | beam.Map(lambda link: (link.link_id, link.target_id)),
                    equal_to([("s:S1", "T1")]), label="links")
        assert_that(committed.dead_letters, equal_to([]), label="commit letters")
        assert_that(committed.conflicts, equal_to([]), label="conflicts")
        assert_that(committed.audit | beam.Map(lambda e: (e["operation"], e["link_id"])),
                    equal_to([("create", "s:S1")]), label="audit")
    with open_link_store(ctx.link_store) as store:
        assert store.lookup_by_source(ctx.pair_key, ["S1"])["S1"].target_id == "T1"
        assert store.lookup_by_source(ctx.pair_key, ["S2"]) == {}


def _updates(ctx, n):
    return _plan(ctx, "updated_target", f"s:S{n}", f"S{n}", f"T{n}",
                 writes=tuple(Write("target", "update", {}) for _ in range(n)))


def test_the_breaker_holds_a_pair_over_its_limit_and_passes_one_within(tmp_path):
    ctx = recording_context(tmp_path)
    plans = [_updates(ctx, 1), _updates(ctx, 2)]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        source = p | beam.Create(plans)
        over = source | "over" >> HoldMassChanges(ctx, limit=2, confirmed=False)
        within = source | "within" >> HoldMassChanges(ctx, limit=3, confirmed=False)
        assert_that(over.plans, equal_to([]), label="held plans")
        assert_that(over.held, equal_to(["customer"]), label="held")
        assert_that(within.plans | beam.Map(lambda plan: plan.link.link_id),
                    equal_to(["s:S1", "s:S2"]), label="passed plans")
        assert_that(within.held, equal_to([]), label="not held")


def test_the_pipelines_last_step_releases_the_lock_after_its_input(tmp_path):
    url = f"sqlite:///{tmp_path}/links.db"
    with open_link_store(url) as store:
        RunLock("df", "run-1", ttl=datetime.timedelta(minutes=5)).acquire(store)
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        after = p | beam.Create([1, 2, 3])
        released = after | ReleaseRunLock(url, "df", "run-1")
        assert_that(released, equal_to([True]))
    with open_link_store(url) as store:
        assert store.read_state("locks/df") is None
