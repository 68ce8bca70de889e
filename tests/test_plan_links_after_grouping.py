"""LookUpLinks + PlanSync read each link once: its id and state before grouping, the link itself
after (issue 18, "each link through the shuffle once"), and plan as when links travelled.

Runs the two transforms on Beam's in-memory runner over entities made here, with a SQLite store
whose reads are counted, and compares the plans with :func:`core.planner.plan_group` called on
the groups built by hand.
"""

import datetime

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from benchmarks import engine
from benchmarks.incremental import counting_link_reads
from connectors.stores import open_link_store
from core.model import LINKED, PENDING, Link
from core.planner import LINK, Entity, plan_group
from transforms import plan

_MODIFIED = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _entity(side: str, entity_id: str, view: dict) -> Entity:
    return Entity(side, entity_id, view, _MODIFIED, False, None)


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'links.db'}"


def _check_plans(store_url, entities, expected):
    """Runs LookUpLinks + PlanSync over ``entities``: their plans must be ``expected``, as
    (link id, outcome, link state, link version, attempt) tuples. Returns the store's reads,
    by method: [calls, links returned]."""
    ctx = engine._context(store_url)

    def summary(plan_):
        return (plan_.link.link_id, plan_.outcome, plan_.link.state, plan_.link.version,
                plan_.link.attempt_id)
    with counting_link_reads() as reads:
        with beam.Pipeline(runner="FnApiRunner") as p:
            planned = (p | beam.Create(entities) | plan.LookUpLinks(ctx) | plan.PlanSync(ctx))
            assert_that(planned.plans | beam.Map(summary), equal_to(expected))
            assert_that(planned.dead_letters, equal_to([]), label="no dead letters")
    return reads


def test_a_linked_group_gets_its_link_after_grouping_once(store_url):
    views = {i: engine.base_view(i) for i in range(3)}
    with open_link_store(store_url) as store:
        store.commit([link.replace(version=0) for link in engine.links(0, 3)])
    edited = dict(views[1], company_name="Kunde 1 (ny)")
    entities = [_entity("source", "S0", views[0]), _entity("target", "T0", views[0]),
                _entity("source", "S1", edited), _entity("target", "T1", views[1]),
                _entity("target", "T2", views[2])]          # only one side of link 2 was read
    reads = _check_plans(store_url, entities, [
        ("s:S0", "unchanged", LINKED, 1, None), ("s:S1", "updated", LINKED, 1, None),
        ("s:S2", "unchanged", LINKED, 1, None)])
    # before grouping only the index (5 entities); after it each link once, not once per side
    assert reads["lookup_refs_by_source"][1] + reads["lookup_refs_by_target"][1] == 5
    assert reads["lookup_by_id"] == [1, 3]
    assert "lookup_by_source" not in reads and "lookup_by_target" not in reads


def test_a_pending_create_travels_with_the_entities_its_match_key_groups(store_url):
    """A reservation left by a crashed run is not linked yet: its entity is grouped by match
    key, where the record of the other system with the same key meets it, and the planner
    needs the reservation there (it links under the reserved id, keeping its attempt)."""
    view = engine.base_view(7)
    reserved = Link(pair=engine.PAIR_KEY, link_id="reserved-7", source_id="S7",
                    attempt_id="crashed-run", snapshot_target=view)
    with open_link_store(store_url) as store:
        (stored,) = store.reserve_many([reserved])
    assert stored.state == PENDING
    source, target = _entity("source", "S7", view), _entity("target", "T7", view)
    expected, _ = plan_group(engine._context(store_url).pair, engine.PAIR_KEY, [source],
                             [target], [stored], "bench")
    assert [(p.link.link_id, p.outcome) for p in expected] == [("reserved-7", LINK)]
    reads = _check_plans(store_url, [source, target], [
        ("reserved-7", LINK, LINKED, stored.version, "crashed-run")])
    assert reads["lookup_by_id"] == [1, 1]      # the reservation, read before grouping


def test_a_run_codes_each_entity_once_before_planning(synced_harness, monkeypatch):
    """In `talksync run` each side's entities are looked up where they are read and mapped,
    and the read-failure gate is after the grouping: no stage boundary holds them before the
    shuffle, so each entity read is coded exactly once (packed by LookUpLinks), never by
    EntityCoder or pickle at a boundary, and decoded once (unpacked by PlanSync)."""
    from transforms import coders
    packed, boundary, unpacked = [], [], []
    monkeypatch.setattr(coders, "write_entity", lambda entity, out, write=coders.write_entity: (
        packed.append(entity.id), write(entity, out)))
    monkeypatch.setattr(coders.EntityCoder, "_write", staticmethod(
        lambda entity, out: (boundary.append(entity.id), coders.write_entity(entity, out))))
    monkeypatch.setattr(coders, "read_entity", lambda stream, read=coders.read_entity: (
        unpacked.append(1), read(stream))[1])
    status, section = synced_harness.run("--full", "--pairs", "customer")
    assert status == 0
    read = section["pairs"]["customer"]
    assert boundary == []
    assert len(packed) == len(unpacked) == read["read_source"] + read["read_target"] > 0


@pytest.mark.parametrize("failed", [[], ["target"]])
def test_the_read_failure_gate_after_grouping_holds_every_entity_and_plans_nothing(
        store_url, failed):
    """A pair one of whose reads failed is not planned: PlanSync's gate (after the grouping,
    which waits for the reads anyway) counts each entity held, not a link travelling with one,
    reads no link and plans nothing. With no failed read the same groups are planned."""
    from apache_beam.metrics.metric import MetricsFilter

    from core.planner import HELD
    from transforms.common import METRICS_NAMESPACE
    view = engine.base_view(7)
    with open_link_store(store_url) as store:
        store.commit([link.replace(version=0) for link in engine.links(0, 2)])
        store.reserve_many([Link(pair=engine.PAIR_KEY, link_id="reserved-7", source_id="S7",
                                 attempt_id="crashed-run", snapshot_target=view)])
    entities = [_entity("source", "S0", engine.base_view(0)),
                _entity("target", "T1", engine.base_view(1)),
                _entity("source", "S7", view), _entity("target", "T7", view)]
    ctx = engine._context(store_url)
    with counting_link_reads() as reads:
        p = beam.Pipeline(runner="FnApiRunner")
        failed_reads = p | "Failed reads" >> beam.Create(failed)   # the sides whose read failed
        planned = (p | beam.Create(entities) | plan.LookUpLinks(ctx)
                   | plan.PlanSync(ctx, failed_reads=failed_reads))
        assert_that(planned.plans | beam.Map(lambda plan_: plan_.link.link_id),
                    equal_to([] if failed else ["s:S0", "s:S1", "reserved-7"]))
        result = p.run()
        result.wait_until_finish()
    held = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(
        f"{ctx.dataflow}/{ctx.pair.name}/{HELD}"))["counters"]
    assert sum(counter.committed for counter in held) == (4 if failed else 0)
    # the reservation travels with S7 (read before grouping); after it, links only if planned
    assert reads["lookup_by_id"] == ([1, 1] if failed else [2, 3])
