"""Reserve -> write -> commit (transforms/write.py), one DoFn at a time and without a
pipeline: the DoFns are called as Beam calls them, with a SQLite link store in a temporary
folder and a fake connector, so each output (plans, outcomes, dead letters, links, conflicts)
and each counter of the report is checked exactly. The whole protocol in a run, crashes
included, is tests/test_crash_recovery.py and the end-to-end tests."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import zlib

import apache_beam as beam
import pytest
from apache_beam.utils.windowed_value import WindowedValue

from connectors.errors import PermanentApiError, PreconditionFailedError
from connectors.linkstore import StaleLinkError
from connectors.stores import open_link_store
from core.model import (
    DELETED_BOTH,
    LINKED,
    PENDING,
    UNLINKED,
    DeadLetter,
    Link,
    Record,
    SystemConfig,
    WriteResult,
)
from core.planner import (
    CREATE_SOURCE,
    CREATE_TARGET,
    DEAD,
    LINK,
    UNCHANGED,
    Conflict,
    SyncPlan,
    Write,
)
from core.spec import get_dataflow
from tests.write_path_fakes import recording_context
from transforms import write
from transforms.common import PROGRESS_LOGGER

T1 = datetime.datetime(2026, 12, 7, 9, tzinfo=datetime.UTC)


@pytest.fixture
def ctx(tmp_path):
    return recording_context(tmp_path)


@pytest.fixture
def store(ctx):
    with open_link_store(ctx.link_store) as opened:
        yield opened


def _pair(ctx, name: str):
    return next(pair for pair in get_dataflow(ctx.dataflow).pairs if pair.name == name)


def _link(ctx, link_id="s:S1", source_id="S1", target_id=None, **changes) -> Link:
    return Link(pair=ctx.pair_key, link_id=link_id, source_id=source_id, target_id=target_id,
                **changes)


def _plan(ctx, outcome=CREATE_TARGET, link=None, writes=(), records_read=1, **changes):
    return SyncPlan(pair=ctx.pair.name, outcome=outcome, link=link or _link(ctx),
                    writes=tuple(writes), records_read=records_read, **changes)


def _letter(output):
    assert isinstance(output, beam.pvalue.TaggedOutput) and output.tag == "dead_letters"
    return dataclasses.replace(output.value, created_at="")


def _expected_letter(ctx, **fields):
    base = dict(run_id="run-1", dataflow=ctx.dataflow, pair=ctx.pair.name, status=None,
                payload=None, created_at="")
    return DeadLetter(**{**base, **fields})


def _run(fn, *elements):
    """``fn`` over ``elements`` in one bundle: (outputs of process, outputs of finish_bundle,
    each checked to be in a window and taken out of it)."""
    fn.setup()
    fn.start_bundle()
    out = [o for element in elements for o in fn.process(element)]
    rest = [_unwindowed(o) for o in fn.finish_bundle()]
    fn.teardown()
    return out, rest


def _counted_committed(rest, committed: int) -> list:
    """A commit bundle's ``finish_bundle`` outputs but its last, the bundle's count of links
    committed (the watermarks' barrier), checked to be ``committed``."""
    *others, count = rest
    assert (count.tag, count.value) == ("committed", committed)
    return others


def _unwindowed(output):
    if isinstance(output, beam.pvalue.TaggedOutput):
        assert isinstance(output.value, WindowedValue)
        return beam.pvalue.TaggedOutput(output.tag, output.value.value)
    assert isinstance(output, WindowedValue)
    return output.value


# --- shards -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "shards"), [(None, 1), (3, 3), ("4", 4), (" 2 ", 2)])
def test_write_shards_of_a_system(value, shards):
    settings = {} if value is None else {"write_shards": value}
    assert write.write_shards(SystemConfig("erp", "customerp", "u", settings=settings)) == shards


@pytest.mark.parametrize("value", [0, -1, "2.5", 2.5, "two", None, True, [2]])
def test_write_shards_must_be_a_whole_number_of_at_least_one(value):
    with pytest.raises(ValueError) as caught:
        write.write_shards(SystemConfig("erp", "customerp", "u",
                                        settings={"write_shards": value}))
    assert str(caught.value) == ("systems.erp.write_shards: expected a whole number of at "
                                 f"least 1, not {value!r}")


def test_a_links_shard_is_its_crc32_modulo_the_shards():
    assert write.DEFAULT_WRITE_SHARDS == 1
    for link_id in ("s:S1", "t:T2", "s:ä/é"):
        for shards in (1, 2, 7):
            assert write._shard(link_id, shards) == zlib.crc32(link_id.encode()) % shards


def test_write_changes_takes_each_sides_shards(tmp_path):
    ctx = dataclasses.replace(recording_context(tmp_path), target_system=SystemConfig(
        "shop", "customwebshop", "u", settings={"write_shards": 3}))
    assert write.WriteChanges(ctx)._shards == {"source": 1, "target": 3}


# --- reserve ----------------------------------------------------------------------------------

def test_plans_that_make_no_link_pass_straight_on(ctx, store):
    plan = _plan(ctx, outcome="updated_target")
    assert _run(write._ReserveLinksFn(ctx), plan) == ([plan], [])


@pytest.mark.parametrize("outcome", [CREATE_TARGET, CREATE_SOURCE, LINK])
def test_a_reservation_is_pending_under_this_runs_attempt(ctx, store, outcome):
    plan = _plan(ctx, outcome, link=_link(ctx, target_id="T1", version=0))
    out, rest = _run(write._ReserveLinksFn(ctx), plan)
    assert out == []                                      # buffered until the bundle ends
    [reserved] = rest
    stored = store.lookup_by_source(ctx.pair_key, ["S1"])["S1"]
    assert (stored.state, stored.attempt_id, stored.version) == (PENDING, "run-1", 1)
    assert reserved == dataclasses.replace(plan, link=plan.link.replace(
        version=1, attempt_id="run-1"))
    assert ctx.counters == {}


def test_an_earlier_attempts_reservation_is_adopted(ctx, store):
    mine = store.reserve(_link(ctx, attempt_id="run-0").replace(state=PENDING))
    plan = _plan(ctx, link=_link(ctx, attempt_id="run-0", version=0))
    [reserved] = _run(write._ReserveLinksFn(ctx), plan)[1]
    assert reserved.link.version == mine.version == 1
    assert reserved.link.attempt_id == "run-0"


def test_a_batch_of_reservations_is_sent_when_full(ctx, store):
    plans = [_plan(ctx, link=_link(ctx, f"s:S{n}", f"S{n}")) for n in range(201)]
    fn = write._ReserveLinksFn(ctx)
    assert fn.batch_size == write._RESERVE_BATCH == 200
    out, rest = _run(fn, *plans)
    assert [p.link.link_id for p in out] == [f"s:S{n}" for n in range(200)]
    assert [p.link.link_id for p in rest] == ["s:S200"]


def test_a_link_another_run_made_of_the_same_ids_is_left_alone(ctx, store):
    store.commit([_link(ctx, target_id="T1")])
    plan = _plan(ctx, LINK, link=_link(ctx, target_id="T1"), records_read=2)
    assert _run(write._ReserveLinksFn(ctx), plan) == ([], [])
    assert ctx.counters == {UNCHANGED: 2}


@pytest.mark.parametrize(("held", "wanted", "side", "entity_id", "state"), [
    # another link (pending) holds the source id
    (dict(link_id="t:T5", source_id="S1", target_id="T5", state=PENDING),
     dict(link_id="s:S1", source_id="S1"), "source", "S1", "pending"),
    # the link id is ours but another run linked it to another target
    (dict(link_id="s:S1", source_id="S1", target_id="T9"),
     dict(link_id="s:S1", source_id="S1", target_id="T1"), "source", "S1", "linked"),
    # a target-first link: the letter names the target
    (dict(link_id="s:S7", source_id="S7", target_id="T1"),
     dict(link_id="t:T1", source_id=None, target_id="T1"), "target", "T1", "linked"),
])
def test_a_reservation_that_clashes_is_a_conflict_letter(ctx, store, held, wanted, side,
                                                         entity_id, state):
    held = dict(held)                                  # the parameters are shared: copied
    if held.pop("state", LINKED) == PENDING:
        store.reserve(_link(ctx, **held))
    else:
        store.commit([_link(ctx, **held)])
    plan = _plan(ctx, LINK, link=_link(ctx, **wanted), records_read=2)
    [output] = _run(write._ReserveLinksFn(ctx), plan)[1]
    letter = _letter(output)
    system, entity = ("erp", "Customers") if side == "source" else ("shop", "customers")
    assert letter == _expected_letter(
        ctx, direction="link", system=system, entity=entity, entity_id=entity_id,
        stage="reserve", error_class="conflict",
        message=f"link {wanted['link_id']} clashes with link {held['link_id']} ({state}) "
                "holding the same id; planned again on the next run")
    assert ctx.counters == {DEAD: 2}


# --- write ------------------------------------------------------------------------------------

class FakeConnector:
    """Answers each op with ``answer(op)``; records every call of ``write``."""

    name = "shop"

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[list] = []
        self.request_count = 0
        self.closed = False

    def write(self, ops):
        self.calls.append(list(ops))
        self.request_count += 1
        return [self.answer(op) for op in ops]

    def close(self):
        self.closed = True


def _record(op, fields=None, etag="e2", entity_id=None):
    return Record(system="shop", entity=op.entity, id=entity_id or op.id or "T1",
                  fields=op.fields if fields is None else fields, etag=etag)


def _ok(op):
    return WriteResult(ref=op.ref, record=_record(op))


@pytest.fixture
def connect(monkeypatch):
    """Install ``FakeConnector(answer)`` for both sides; returns it."""
    def install(answer=_ok):
        connector = FakeConnector(answer)
        monkeypatch.setattr(write, "connector_for", lambda system: connector)
        return connector
    return install


def _write_fn(ctx, batch, side="target", **side_inputs):
    fn = write._WriteBatchFn(ctx)
    fn.setup()
    out = list(fn.process(((side, 0), batch), **side_inputs))
    return fn, out


CHANGES = {"email": "ada@example.com", "company_name": "Ada"}


def test_creates_and_updates_become_write_ops_and_outcomes(ctx, store, connect, caplog):
    connector = connect()
    create = Write("target", "create", CHANGES, idempotency_key="key-1")
    update = Write("target", "update", {"company_name": "Bo"}, entity_id="T2", etag="e1")
    link_2 = _link(ctx, "s:S2", "S2", "T2")
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        fn, out = _write_fn(ctx, [(_link(ctx), create), (link_2, update)])
    [ops] = connector.calls
    assert [(o.kind, o.entity, o.fields, o.ref, o.id, o.if_match, o.idempotency_key)
            for o in ops] == [
        ("create", "customers", CHANGES, "s:S1", None, None, "key-1"),
        ("update", "customers", {"company_name": "Bo"}, "s:S2", "T2", "e1", None)]
    view = {"email": "ada@example.com", "company_name": "Ada", "vat_number": None,
            "phone": None, "address.line1": None, "address.line2": None,
            "address.postal_code": None, "address.city": None, "address.country": None}
    assert out == [
        ("s:S1", write.WriteOutcome("s:S1", "target", True, "T1", "e2", view)),
        # an answer without the required e-mail cannot be read back: viewed as sent
        ("s:S2", write.WriteOutcome("s:S2", "target", True, "T2", "e2", {"company_name": "Bo"}))]
    assert ctx.counters == {"written_target": 2}
    assert caplog.messages == ["customer: wrote 2 changes to shop"]
    fn.teardown()
    assert connector.closed


def test_writes_to_the_source_use_the_source_entity_and_fields(ctx, store, connect):
    connector = connect()
    _write_fn(ctx, [(_link(ctx, "t:T1", None, "T1"),
                     Write("source", "create", {"company_name": "Ada"}))], side="source")
    [[op]] = connector.calls
    assert (op.entity, op.fields) == ("Customers", {"Name": "Ada"})
    assert ctx.counters == {"written_source": 1}


def test_a_refused_write_is_a_letter_about_the_entity_it_came_from(ctx, store, connect,
                                                                   caplog):
    error = PreconditionFailedError("shop: PATCH -> HTTP 412: moved", status=412, system="shop")
    connect(lambda op: WriteResult(ref=op.ref, error=error) if op.ref == "s:S1" else _ok(op))
    update = Write("target", "update", {"company_name": "Bo"}, entity_id="T1", etag="e1")
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        _, out = _write_fn(ctx, [(_link(ctx, target_id="T1"), update),
                                 (_link(ctx, "s:S2", "S2"), Write("target", "create", CHANGES))])
    letter, failed, ok = out
    assert _letter(letter) == _expected_letter(
        ctx, direction="to_target", system="erp", entity="Customers", entity_id="S1",
        stage="write", error_class="conflict", status=412,
        message="update in shop failed: shop: PATCH -> HTTP 412: moved",
        payload=json.dumps({"company_name": "Bo"}))
    assert failed == ("s:S1", write.WriteOutcome("s:S1", "target", False))
    assert ok[1].ok
    assert ctx.counters == {"written_target": 1}
    assert caplog.messages == ["customer: wrote 2 changes to shop (1 failed)"]


def test_a_refused_write_to_the_source_names_the_target_entity(ctx, store, connect):
    error = PermanentApiError("erp: bad", status=400, system="erp")
    connect(lambda op: WriteResult(ref=op.ref, error=error))
    _, out = _write_fn(ctx, [(_link(ctx, "t:T1", None, "T1"),
                              Write("source", "create", {"company_name": "Ada"}))],
                       side="source")
    letter = _letter(out[0])
    assert (letter.system, letter.entity, letter.entity_id, letter.direction) == (
        "shop", "customers", "T1", "to_source")
    assert letter.message == "create in erp failed: erp: bad"
    assert letter.error_class == error.error_class and letter.payload == '{"Name": "Ada"}'


def test_a_change_that_cannot_be_mapped_fails_alone_and_unsent(tmp_path, connect):
    ctx = recording_context(tmp_path)
    ctx = dataclasses.replace(ctx, pair=_pair(ctx, "order"))
    connector = connect()
    bad = Write("source", "create", {"customer_id": "C9"})
    fine = Write("source", "create", {"number": "O2"})
    _, out = _write_fn(ctx, [(_link(ctx, "t:T1", None, "T1"), bad),
                             (_link(ctx, "t:T2", None, "T2"), fine)], side="source")
    letter, failed, written = out
    assert written[0] == "t:T2" and written[1].ok
    assert _letter(letter) == _expected_letter(
        ctx, direction="to_source", system="shop", entity="orders", entity_id="T1",
        stage="write", error_class="reference",
        message="create in erp failed: customer_id (CustomerNo): customer C9 is not linked "
                "yet (retried on the next run)", payload='{"customer_id": "C9"}')
    assert failed == ("t:T1", write.WriteOutcome("t:T1", "source", False))
    [[op]] = connector.calls                        # only the change that could be mapped
    assert op.fields == {"OrderNo": "O2"}
    assert ctx.counters == {"written_source": 1}


def test_an_adopted_entity_gets_the_difference_as_an_update(ctx, store, connect):
    def answer(op):
        if op.kind == "create":
            return WriteResult(ref=op.ref, adopted=True, record=_record(
                op, {"email": "ada@example.com", "company_name": "Old"}, etag="e7",
                entity_id="T7"))
        return WriteResult(ref=op.ref, record=_record(op, {**CHANGES}, etag="e8"))

    connector = connect(answer)
    _, out = _write_fn(ctx, [(_link(ctx), Write("target", "create", CHANGES))])
    _, update = connector.calls
    [op] = update
    assert (op.kind, op.entity, op.fields, op.ref, op.id, op.if_match) == (
        "update", "customers", {"company_name": "Ada"}, "s:S1", "T7", "e7")
    [(link_id, outcome)] = out
    assert (outcome.ok, outcome.entity_id, outcome.etag) == (True, "T7", "e8")
    assert outcome.view["company_name"] == "Ada"


def test_an_adopted_entity_with_our_values_is_taken_as_it_is(ctx, store, connect):
    connector = connect(lambda op: WriteResult(ref=op.ref, adopted=True, record=_record(
        op, dict(CHANGES), etag="e7", entity_id="T7")))
    _, [(_, outcome)] = _write_fn(ctx, [(_link(ctx), Write("target", "create", CHANGES))])
    assert len(connector.calls) == 1 and outcome.etag == "e7"


def test_immutable_properties_of_an_adopted_entity_are_not_updated(tmp_path, connect):
    ctx = recording_context(tmp_path)
    ctx = dataclasses.replace(ctx, pair=_pair(ctx, "product"))
    changes = {"sku": "A1", "name": "Pen"}
    connector = connect(lambda op: WriteResult(ref=op.ref, adopted=True, record=_record(
        op, {"sku": "a1", "name": "Pen"}, entity_id="P1")))
    _, [(_, outcome)] = _write_fn(ctx, [(_link(ctx), Write("target", "create", changes))])
    assert len(connector.calls) == 1 and outcome.ok


def test_a_failed_update_of_an_adopted_entity_fails_the_write(ctx, store, connect):
    error = PreconditionFailedError("shop: 412", status=412, system="shop")

    def answer(op):
        if op.kind == "create":
            return WriteResult(ref=op.ref, adopted=True, record=_record(
                op, {"email": "ada@example.com"}, entity_id="T7"))
        return WriteResult(ref=op.ref, error=error)

    connect(answer)
    _, out = _write_fn(ctx, [(_link(ctx), Write("target", "create", CHANGES)),
                             (_link(ctx, "s:S2", "S2"), Write("target", "update", CHANGES,
                                                              entity_id="T2"))])
    letter, failed, *rest = out
    # the next write of the batch is still handled (its update is refused the same way)
    assert [r for r in rest if not isinstance(r, beam.pvalue.TaggedOutput)] == [
        ("s:S2", write.WriteOutcome("s:S2", "target", False))]
    assert _letter(letter).message == "create in shop failed: shop: 412"
    assert _letter(letter).payload == json.dumps({"company_name": "Ada"})
    assert failed == ("s:S1", write.WriteOutcome("s:S1", "target", False))
    assert ctx.counters == {}


def test_an_answer_that_cannot_be_read_back_is_viewed_as_what_was_sent(ctx, store, connect):
    connect(lambda op: WriteResult(ref=op.ref, record=_record(op, {"email": "not an e-mail"})))
    _, [(_, outcome)] = _write_fn(ctx, [(_link(ctx), Write("target", "create", CHANGES))])
    assert outcome.view == CHANGES


def test_a_connector_per_side_made_once(ctx, store, monkeypatch):
    made = []

    def connector_for(system):
        made.append(system.name)
        return FakeConnector(_ok)

    monkeypatch.setattr(write, "connector_for", connector_for)
    fn = write._WriteBatchFn(ctx)
    fn.setup()
    for side in ("target", "target", "source"):
        list(fn.process(((side, 0), [(_link(ctx), Write(side, "create", CHANGES))])))
    assert made == ["shop", "erp"]
    fn.teardown()
    assert all(c.closed for c in fn._connectors.values())


# --- commit -----------------------------------------------------------------------------------

def _joined(plan, *outcomes):
    """A plan and its writes' outcomes as CommitLinks groups them by link id."""
    return plan.link.link_id, [*outcomes, plan]


def _ok_outcome(link_id, side="target", entity_id="T1", view=None):
    return write.WriteOutcome(link_id, side, True, entity_id, f"etag-{side}",
                              view or {"company_name": side})


def test_a_link_is_committed_with_what_each_write_answered(ctx, store):
    link = _link(ctx, attempt_id="run-1", snapshot_source={"company_name": "s0"},
                 snapshot_target={"company_name": "t0"}, source_etag="se0")
    plan = _plan(ctx, link=store.reserve(link.replace(state=PENDING)),
                 writes=[Write("target", "create", CHANGES)], records_read=1)
    out, rest = _run(write._CommitLinksFn(ctx), _joined(plan, _ok_outcome("s:S1")))
    assert out == []
    [committed] = [o for o in rest if isinstance(o, Link)]
    stored = store.lookup_by_source(ctx.pair_key, ["S1"])["S1"]
    assert committed == stored
    assert (stored.state, stored.version, stored.target_id, stored.target_etag) == (
        LINKED, 2, "T1", "etag-target")
    assert stored.snapshot_target == {"company_name": "target"}
    assert (stored.snapshot_source, stored.source_etag) == ({"company_name": "s0"}, "se0")
    assert ctx.counters == {CREATE_TARGET: 1}


def test_committed_link_takes_the_written_sides_only():
    plan = SyncPlan("p", "updated", Link("p", "s:S1", "S1", "T1", state=PENDING,
                                         snapshot_source={"a": 0}, snapshot_target={"a": 0}),
                    writes=(Write("source", "update", {"a": 1}),))
    link = write._committed_link(plan, {
        "source": write.WriteOutcome("s:S1", "source", True, "S9", "es", {"a": 1}),
        "target": write.WriteOutcome("s:S1", "target", True, "T9", "et", {"a": 2})})
    assert link == Link("p", "s:S1", "S9", "T1", state=LINKED, snapshot_source={"a": 1},
                        snapshot_target={"a": 0}, source_etag="es")
    # an outcome of a side without a write is passed over, whatever comes after it
    assert write._committed_link(plan, {
        "target": write.WriteOutcome("s:S1", "target", True, "T9", "et", {"a": 2}),
        "source": write.WriteOutcome("s:S1", "source", True, "S9", "es", {"a": 1})}) == link
    both = dataclasses.replace(plan, writes=(Write("target", "update", {}),))
    assert write._committed_link(both, {
        "target": write.WriteOutcome("s:S1", "target", True, "T9", "et", None)}) == Link(
        "p", "s:S1", "S1", "T9", state=LINKED, snapshot_source={"a": 0}, snapshot_target={},
        target_etag="et")


@pytest.mark.parametrize("outcomes", [
    [],                                                               # the write's outcome lost
    [write.WriteOutcome("s:S1", "target", False)],                   # the write failed
    [_ok_outcome("s:S1", "source")],                                 # only the other side's
])
def test_a_link_whose_writes_did_not_all_succeed_is_kept_as_it_was(ctx, store, outcomes):
    plan = _plan(ctx, link=_link(ctx, target_id="T1"), records_read=2,
                 writes=[Write("target", "update", {"company_name": "x"})])
    out, rest = _run(write._CommitLinksFn(ctx), _joined(plan, *outcomes))
    assert out == [] and _counted_committed(rest, 0) == []
    assert store.lookup_by_source(ctx.pair_key, ["S1"]) == {}
    assert ctx.counters == {DEAD: 2}


def test_each_plan_of_a_link_is_judged_on_its_own(ctx, store):
    failed = _plan(ctx, "updated", link=_link(ctx, target_id="T1"), records_read=2,
                   writes=[Write("source", "update", {"company_name": "x"})])
    fine = _plan(ctx, "updated", link=_link(ctx, target_id="T1"), records_read=1)
    fn = write._CommitLinksFn(ctx)
    fn.setup()
    fn.start_bundle()
    assert list(fn.process(("s:S1", [failed, fine]))) == []
    assert [plan for plan, _ in fn._buffer] == [fine]
    assert ctx.counters == {DEAD: 2}


def test_a_link_changed_meanwhile_is_a_conflict_letter(ctx, store, caplog):
    (theirs,) = store.commit([_link(ctx, target_id="T1")])
    stale = _plan(ctx, "updated", link=theirs.replace(version=0), records_read=2)
    target_first = _plan(ctx, "updated", link=_link(ctx, "t:T5", None, "T5", version=4))
    fresh = _plan(ctx, "updated", link=_link(ctx, "s:S3", "S3", "T3"), records_read=2)
    fn = write._CommitLinksFn(ctx)
    fn.setup()
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        out = list(fn.flush_batch([(p, p.link) for p in (stale, target_first, fresh)]))
    assert caplog.messages == ["customer: committed 1 links"]
    letters = [_letter(o) for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert letters == [
        _expected_letter(ctx, direction="link", system="erp", entity="Customers",
                         entity_id="S1", stage="commit", error_class="conflict",
                         message="link s:S1 was changed by another run; planned again on the "
                                 "next run"),
        _expected_letter(ctx, direction="link", system="shop", entity="customers",
                         entity_id="T5", stage="commit", error_class="conflict",
                         message="link t:T5 was changed by another run; planned again on the "
                                 "next run")]
    [committed] = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert committed.link_id == "s:S3" and committed.version == 1
    assert ctx.counters == {DEAD: 3, "updated": 2}


def test_a_link_the_store_did_not_return_is_not_reported_committed(ctx, store, monkeypatch):
    plan = _plan(ctx, "updated", link=_link(ctx, target_id="T1"))
    fn = write._CommitLinksFn(ctx)
    fn.setup()
    monkeypatch.setattr(fn._store, "commit", lambda links: [])
    out = list(fn.flush_batch([(plan, plan.link)]))
    assert _letter(out[0]).stage == "commit" and len(out) == 1
    monkeypatch.setattr(fn._store, "commit", lambda links: (_ for _ in ()).throw(
        StaleLinkError("x", link_ids=[], committed=[])))
    assert _letter(list(fn.flush_batch([(plan, plan.link)]))[0]).stage == "commit"


def test_conflicts_and_audit_events_of_a_committed_plan(ctx, store):
    conflict = Conflict("company_name", "Src", "Tgt", "source", "latest", T1,
                        T1 - datetime.timedelta(hours=1), source_edited_in="erp",
                        target_edited_in="shop")
    plan = _plan(ctx, "updated", link=_link(ctx, target_id="T1"), records_read=2,
                 writes=[Write("target", "update", {"company_name": "Src"}, entity_id="T1")],
                 conflicts=(conflict,))
    fn = write._CommitLinksFn(ctx)
    fn.setup()
    out = list(fn.flush_batch([(plan, write._committed_link(
        plan, {"target": _ok_outcome("s:S1", view={"company_name": "Src"})}))]))
    tagged = [(o.tag, o.value) for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert tagged[0] == ("conflicts", {
        "run_id": "run-1", "dataflow": ctx.dataflow, "pair": "customer", "source_id": "S1",
        "target_id": "T1", "property": "company_name", "source_value": "Src",
        "target_value": "Tgt", "winner": "source", "rule": "latest",
        "source_modified": T1.isoformat(), "target_modified": "2026-12-07T08:00:00+00:00",
        "source_edited_in": "erp", "target_edited_in": "shop"})
    assert [tag for tag, _ in tagged[1:]] == ["audit", "audit"]     # the update, the conflict
    moment = tagged[1][1]["time"]
    assert moment.tzinfo is datetime.UTC
    assert abs(datetime.datetime.now(datetime.UTC) - moment) < datetime.timedelta(minutes=5)
    assert isinstance(out[-1], Link) and out[-1].version == 1
    assert ctx.counters == {"updated": 2, "updated_target": 1, "conflicts": 1}


def test_commits_go_in_batches_of_two_hundred(ctx, store):
    fn = write._CommitLinksFn(ctx)
    assert fn.batch_size == write._COMMIT_BATCH == 200
    plans = [_plan(ctx, "updated", link=_link(ctx, f"s:S{n}", f"S{n}", f"T{n}"))
             for n in range(200)]
    out, rest = _run(fn, *[_joined(p) for p in plans])
    assert len(out) == 200 and _counted_committed(rest, 200) == []


def test_count_plan_counts_entities_updates_per_side_and_conflicts(ctx):
    conflict = Conflict("a", 1, 2, "source", "latest")
    plan = _plan(ctx, "updated", records_read=2, conflicts=(conflict, conflict), writes=[
        Write("target", "update", {}), Write("source", "update", {}),
        Write("target", "create", {})])
    write.count_plan(ctx, plan)
    assert ctx.counters == {"updated": 2, "updated_target": 1, "updated_source": 1,
                            "conflicts": 2}


def test_nothing_is_counted_for_a_plan_without_entities_read(ctx):
    write.count_plan(ctx, _plan(ctx, "updated", records_read=0))
    write.count_entities(ctx, _plan(ctx, records_read=0), DEAD)
    assert ctx.counters == {}


def test_iso_of_a_modified_time():
    assert write._iso(None) is None
    assert write._iso(T1) == "2026-12-07T09:00:00+00:00"


def test_an_adopted_order_in_the_source_is_read_and_reconciled_through_references(
        tmp_path, monkeypatch):
    ctx = recording_context(tmp_path)
    ctx = dataclasses.replace(ctx, pair=_pair(ctx, "order"))
    with open_link_store(ctx.link_store) as links:
        links.commit([Link(f"{ctx.dataflow}/customer", "s:S-C1", "S-C1", "T-C1"),
                      Link(f"{ctx.dataflow}/customer", "s:S-C2", "S-C2", "T-C2")])
    erp_order = {"OrderNo": "O1", "CustomerNo": "S-C2", "OrderDate": "2026-12-01",
                 "Currency": "NOK", "Status": "Open", "Lines": []}
    # the ERP answers the update with the order as it now is (its currency changed meanwhile)
    answers = [erp_order, {**erp_order, "CustomerNo": "S-C1", "OrderDate": "2026-12-07",
                           "Currency": "EUR"}]

    def answer(op):
        return WriteResult(ref=op.ref, adopted=op.kind == "create", record=Record(
            "erp", "Orders", "O1", answers.pop(0), etag="e1"))

    connector = FakeConnector(answer)
    monkeypatch.setattr(write, "connector_for", lambda system: connector)
    changes = {"number": "O1", "customer_id": "T-C1", "order_date": datetime.date(2026, 12, 7),
               "currency": "NOK", "status": "pending", "lines": ()}
    _, [(_, outcome)] = _write_fn(ctx, [(_link(ctx, "t:T1", None, "T1"),
                                         Write("source", "create", changes))], side="source")
    create, update = connector.calls
    assert create[0].fields["CustomerNo"] == "S-C1"            # the reference, translated
    # the adopted order is read through the reference: its customer and date differ
    assert (update[0].kind, update[0].entity, update[0].fields) == (
        "update", "Orders", {"CustomerNo": "S-C1", "OrderDate": "2026-12-07"})
    assert outcome.ok and outcome.view == {**changes, "currency": "EUR"}


# --- deletes (docs/deletes.md) ------------------------------------------------------------------

def test_a_delete_is_a_write_op_without_fields_and_its_outcome_has_no_view(ctx, store, connect):
    connector = connect(lambda op: WriteResult(ref=op.ref))         # gone: no record
    delete = Write("target", "delete", {}, entity_id="T1", etag="e1")
    fn, out = _write_fn(ctx, [(_link(ctx, target_id="T1"), delete)])
    [[op]] = connector.calls
    assert (op.kind, op.fields, op.id, op.if_match) == ("delete", {}, "T1", "e1")
    assert out == [("s:S1", write.WriteOutcome("s:S1", "target", True, "T1"))]
    assert ctx.counters == {"written_target": 1}
    fn.teardown()


def test_a_refused_delete_is_a_letter_about_the_deleted_record(ctx, store, connect):
    refused = PreconditionFailedError("changed since read", status=412, system="shop")
    connect(lambda op: WriteResult(ref=op.ref, error=refused))
    delete = Write("target", "delete", {}, entity_id="T1", etag="e1")
    fn, out = _write_fn(ctx, [(_link(ctx, target_id="T1"), delete)])
    letter = _letter(out[0])
    assert (letter.system, letter.entity_id, letter.stage, letter.error_class) == (
        "erp", "S1", "write", "conflict")
    assert letter.message.startswith("delete in shop failed")
    assert out[1] == ("s:S1", write.WriteOutcome("s:S1", "target", False))
    fn.teardown()


def test_a_propagated_delete_commits_a_tombstone_of_both_and_its_events(ctx, store):
    (linked,) = store.commit([_link(ctx, target_id="T1", snapshot_target={"phone": "1"})])
    plan = _plan(ctx, "deleted", link=linked.replace(state=DELETED_BOTH), records_read=0,
                 writes=[Write("target", "delete", {}, entity_id="T1")])
    fn = write._CommitLinksFn(ctx)
    fn.setup()
    out = list(fn.flush_batch([(plan, write._committed_link(
        plan, {"target": write.WriteOutcome("s:S1", "target", True, "T1")}))]))
    stored = store.lookup_by_source(ctx.pair_key, ["S1"])["S1"]
    assert (stored.state, stored.target_id, stored.snapshot_target) == (
        DELETED_BOTH, "T1", {"phone": "1"})
    events = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert [(e["operation"], e["direction"], e["source_id"], e["target_id"])
            for e in events] == [("deleted", "in_source", "S1", "T1"),
                                 ("delete", "to_target", "S1", "T1")]
    assert ctx.counters == {"deleted_in_target": 1}


def test_an_unlink_removes_the_link_and_says_so(ctx, store):
    (linked,) = store.commit([_link(ctx, target_id="T1")])
    plan = _plan(ctx, "deleted", link=linked.replace(state=UNLINKED), records_read=1)
    fn = write._CommitLinksFn(ctx)
    fn.setup()
    out = list(fn.flush_batch([(plan, write._committed_link(plan, {}))]))
    assert store.lookup_by_source(ctx.pair_key, ["S1"]) == {}
    events = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert [e["operation"] for e in events] == ["unlink"]
    assert ctx.counters == {"deleted": 1, "unlinked": 1}
