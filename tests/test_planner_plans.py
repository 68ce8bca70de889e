"""The planner's plans in full: every field of the plan, its link, its writes and their
provenance, for each kind of plan (update, conflict, link by match, create both ways, delete),
one-way properties and the report's accounting of a group. Written to kill the mutants that
survived tests/test_planner.py (docs/testing.md): those check the decisions, these the whole
record a decision leaves for the write stage, the link store and the audit log."""

import datetime
import re
from decimal import Decimal

import pytest
import yaml

from core.model import LINKED, PENDING, Link
from core.planner import (
    CREATE_SOURCE,
    CREATE_TARGET,
    DEAD,
    DELETED,
    LINK,
    SKIPPED,
    SOURCE,
    TARGET,
    UNCHANGED,
    UPDATE,
    Conflict,
    Entity,
    Provenance,
    Rejection,
    SyncPlan,
    Write,
    account_group,
    idempotency_key,
    plan_group,
)
from core.provenance import Version
from core.spec import DATAFLOWS_DIR, parse_dataflow

KEY = "flow/product"
T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
#: price is two-way, cost goes only to the target, stock only to the source
DIRECTIONS = {"CostPrice": "to_target", "StockQty": "to_source"}


def _pair(conflict="latest", create="both"):
    raw = yaml.safe_load((DATAFLOWS_DIR / "customerp-customwebshop.yaml").read_text())
    [product] = [p for p in raw["pairs"] if p["name"] == "product"]
    product = {**product, "conflict": conflict, "create": create,
               "source": {**product["source"], "label": "Item"}}
    product["properties"] = [{**prop, "direction": DIRECTIONS[prop["source"]]}
                             if prop["source"] in DIRECTIONS else prop
                             for prop in product["properties"]]
    return parse_dataflow({**raw, "pairs": [product]}, "flow.yaml").pair("product")


PAIR = _pair()


def _at(minutes):
    return T0 + datetime.timedelta(minutes=minutes)


def _view(**changes):
    view = {"sku": "IT-1", "name": "Kaffe", "gtin": None, "price": Decimal("10"),
            "cost": Decimal("4"), "vat_rate": Decimal("25"), "stock_quantity": 5}
    view.update(changes)
    return view


def _link(**changes):
    return Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", target_id="prd_1", state=LINKED,
                snapshot_source=_view(), snapshot_target=_view(), source_etag='"s1"',
                target_etag='"t1"', version=3).replace(**changes)


def _plan(sources=(), targets=(), links=(), pair=PAIR):
    return plan_group(pair, KEY, list(sources), list(targets), list(links), "run-1")


def _source(etag=None, minutes=1, **changes):
    return Entity(SOURCE, "IT-1", _view(**changes), _at(minutes), etag=etag)


def _target(etag=None, minutes=1, **changes):
    return Entity(TARGET, "prd_1", _view(**changes), _at(minutes), etag=etag)


# --- linked ----------------------------------------------------------------------------------

def test_an_update_plan_in_full():
    plans, rejections = _plan([_source(price=Decimal("12"), minutes=2)],
                              [_target(etag='"t2"', name="Kaffe mørk", minutes=3)], [_link()])
    assert rejections == []
    assert plans == [SyncPlan(
        pair="product", outcome=UPDATE,
        link=_link(snapshot_source=_view(price=Decimal("12"), name="Kaffe mørk"),
                   snapshot_target=_view(price=Decimal("12"), name="Kaffe mørk"),
                   target_etag='"t2"'),
        writes=(Write(TARGET, "update", {"price": Decimal("12")}, entity_id="prd_1",
                      etag='"t2"', provenance=(Provenance("price", Decimal("10"),
                                                          Decimal("12"), SOURCE,
                                                          "changed in source"),),
                      replaces=Version('"t2"', _at(3))),
                Write(SOURCE, "update", {"name": "Kaffe mørk"}, entity_id="IT-1",
                      etag=None, provenance=(Provenance("name", "Kaffe", "Kaffe mørk",
                                                          TARGET, "changed in target"),),
                      replaces=Version(None, _at(2)))))]
    assert plans[0].write_for(TARGET) is plans[0].writes[0]
    assert plans[0].write_for(SOURCE) is plans[0].writes[1]


def test_a_conflict_plan_in_full():
    [plan], _ = _plan([_source(name="ERP", minutes=5, etag='"s2"')],
                      [_target(name="Shop", minutes=9)], [_link()])
    assert plan.conflicts == (Conflict("name", "ERP", "Shop", TARGET, "latest change wins",
                                       _at(5), _at(9)),)
    assert plan.writes == (Write(SOURCE, "update", {"name": "Shop"}, entity_id="IT-1",
                                 etag='"s2"', provenance=(Provenance(
                                     "name", "ERP", "Shop", TARGET, "latest change wins",
                                     conflict=True),), replaces=Version('"s2"', _at(5))),)
    assert plan.write_for(TARGET) is None


def test_an_entity_not_read_keeps_the_links_etag_and_snapshot():
    [plan], _ = _plan([], [_target(name="Te")], [_link()])
    assert plan.writes == (Write(SOURCE, "update", {"name": "Te"}, entity_id="IT-1",
                                 etag='"s1"', provenance=(Provenance(
                                     "name", "Kaffe", "Te", TARGET, "changed in target"),),
                                 replaces=Version('"s1"')),)
    [plan], _ = _plan([_source(name="Te")], [], [_link()])
    assert plan.writes[0].etag == '"t1"' and plan.link.target_etag == '"t1"'
    assert plan.link.snapshot_target == _view(name="Te")


def test_a_new_etag_alone_is_committed_and_a_missing_one_keeps_the_old():
    [plan], _ = _plan([_source()], [_target(etag='"t9"')], [_link()])
    assert (plan.outcome, plan.writes, plan.commit) == (UNCHANGED, (), True)
    assert (plan.link.source_etag, plan.link.target_etag) == ('"s1"', '"t9"')
    [plan], _ = _plan([_source(etag='"s9"')], [_target()], [_link()])
    assert (plan.commit, plan.link.source_etag, plan.link.target_etag) == (True, '"s9"', '"t1"')
    [plan], _ = _plan([_source(etag='"s1"')], [_target(etag='"t1"')], [_link()])
    assert plan.commit is False


def test_a_snapshot_change_alone_is_committed():
    # the target normalised a value (the sides differ, each equals what it was sent): the
    # target's snapshot is brought up to date without a write
    link = _link(snapshot_target=_view(name="Kaffe "))
    [plan], _ = _plan([_source()], [_target()], [link])
    assert (plan.writes, plan.commit) == ((), True)
    assert plan.link.snapshot_target == _view()
    link = _link(snapshot_source=_view(name="Kaffe "))
    [plan], _ = _plan([_source()], [_target()], [link])
    assert (plan.writes, plan.commit, plan.link.snapshot_source) == ((), True, _view())


def test_a_deleted_entity_writes_nothing_by_default_and_leaves_a_tombstone():
    """Delete policy ``ignore``: nothing written; the link is kept as a tombstone naming the
    deleted side (the rest of the delete rules: tests/test_deletes_planner.py)."""
    for sources, targets, state in (
            ([Entity(SOURCE, "IT-1", {}, deleted=True)], [_target()], "deleted_source"),
            ([_source()], [Entity(TARGET, "prd_1", {}, deleted=True)], "deleted_target")):
        [plan], _ = _plan(sources, targets, [_link()])
        assert plan == SyncPlan(pair="product", outcome=DELETED,
                                link=_link().replace(state=state), commit=True)


@pytest.mark.parametrize("missing_in", ["snapshot_source", "snapshot_target"])
def test_a_property_new_to_the_spec_is_settled_by_the_first_link_rule(missing_in):
    snapshot = {k: v for k, v in _view().items() if k != "gtin"}
    link = _link(**{missing_in: snapshot})
    [plan], _ = _plan([_source(gtin="7038010000010", minutes=1)],
                      [_target(gtin=None, minutes=9, etag='"t5"')], [link])
    assert plan.writes == (Write(TARGET, "update", {"gtin": "7038010000010"}, entity_id="prd_1",
                                 etag='"t5"', provenance=(Provenance(
                                     "gtin", None, "7038010000010", SOURCE,
                                     "first link: the only value"),),
                                 replaces=Version('"t5"', _at(9))),)


@pytest.mark.parametrize("sources,targets,winner", [
    # both read, both have a value: the newer record wins
    ([_source(gtin="701", minutes=1)], [_target(gtin="702", minutes=9)], TARGET),
    # one side not read (its snapshot stands in, with no time): the source wins
    ([], [_target(gtin="702", minutes=9)], SOURCE),
    ([_source(gtin="702", minutes=1)], [], SOURCE),
])
def test_a_new_property_with_values_on_both_sides(sources, targets, winner):
    # the side not read keeps its value in its snapshot; the read side's snapshot lacks it
    without_gtin = {k: v for k, v in _view().items() if k != "gtin"}
    link = _link(snapshot_source=_view(gtin="701"), snapshot_target=without_gtin)
    if not targets:
        link = _link(snapshot_source=without_gtin, snapshot_target=_view(gtin="701"))
    [plan], _ = _plan(sources, targets, [link])
    [write] = plan.writes
    assert write.side == (SOURCE if winner == TARGET else TARGET)
    assert write.provenance[0].rule == "first link: newer record wins"


def test_linked_links_are_planned_in_link_id_order():
    second = _link(link_id="s:IT-2", source_id="IT-2", target_id="prd_2")
    plans, _ = _plan([_source()], [_target()], [second, _link()])
    assert [p.link.link_id for p in plans] == ["s:IT-1", "s:IT-2"]


# --- one-way properties ----------------------------------------------------------------------

@pytest.mark.parametrize("side,prop,value,written,rule", [
    # a one-way property edited on the side it flows from goes across ...
    (SOURCE, "cost", Decimal("5"), TARGET, "one-way to target"),
    (TARGET, "stock_quantity", 2, SOURCE, "one-way to source"),
    # ... and edited on the side it flows to, it is put back
    (TARGET, "cost", Decimal("5"), TARGET, "one-way to target"),
    (SOURCE, "stock_quantity", 2, SOURCE, "one-way to source"),
])
def test_one_way_properties_flow_one_way(side, prop, value, written, rule):
    edited = (_source if side == SOURCE else _target)(**{prop: value})
    other = (_target if side == SOURCE else _source)()
    sources, targets = ([edited], [other]) if side == SOURCE else ([other], [edited])
    [plan], _ = _plan(sources, targets, [_link()])
    origin = SOURCE if written == TARGET else TARGET
    after = value if side == origin else _view()[prop]
    before = _view()[prop] if side == origin else value
    [write] = plan.writes
    assert (write.side, dict(write.changes)) == (written, {prop: after})
    assert write.provenance == (Provenance(prop, before, after, origin, rule),)
    assert plan.conflicts == ()


def test_one_way_properties_that_agree_to_differ_are_left_alone():
    link = _link(snapshot_source=_view(cost=Decimal("5"), stock_quantity=2))
    [plan], _ = _plan([_source(cost=Decimal("5"), stock_quantity=2)], [_target()], [link])
    assert plan.writes == ()


def test_first_link_rules_in_full():
    source = Entity(SOURCE, "IT-1", _view(gtin="703", name="Old", cost=Decimal("5"),
                                          stock_quantity=1), _at(1), etag='"s1"')
    target = Entity(TARGET, "prd_9", _view(gtin=None, name="New", price=None,
                                           cost=Decimal("4"), stock_quantity=2), _at(2),
                    etag='"t1"')
    [plan], _ = _plan([source], [target])
    assert plan == SyncPlan(
        pair="product", outcome=LINK,
        link=Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", target_id="prd_9",
                  state=LINKED, source_etag='"s1"', target_etag='"t1"',
                  snapshot_source=_view(gtin="703", name="New", cost=Decimal("5"),
                                        stock_quantity=2),
                  snapshot_target=_view(gtin="703", name="New", cost=Decimal("5"),
                                        stock_quantity=2)),
        writes=(Write(TARGET, "update", {"gtin": "703", "price": Decimal("10"),
                                         "cost": Decimal("5")},
                      entity_id="prd_9", etag='"t1"', provenance=(
                          Provenance("gtin", None, "703", SOURCE, "first link: the only value"),
                          Provenance("price", None, Decimal("10"), SOURCE,
                                     "first link: the only value"),
                          Provenance("cost", Decimal("4"), Decimal("5"), SOURCE,
                                     "first link: one-way to target")),
                      replaces=Version('"t1"', _at(2))),
                Write(SOURCE, "update", {"name": "New", "stock_quantity": 2},
                      entity_id="IT-1", etag='"s1"', provenance=(
                          Provenance("name", "Old", "New", TARGET,
                                     "first link: newer record wins"),
                          Provenance("stock_quantity", 1, 2, TARGET,
                                     "first link: one-way to source")),
                      replaces=Version('"s1"', _at(1)))))


@pytest.mark.parametrize("s_minutes,t_minutes,winner", [(1, 2, TARGET), (2, 1, SOURCE),
                                                        (1, 1, SOURCE), (None, 2, SOURCE),
                                                        (1, None, SOURCE)])
def test_first_link_newer_record_wins_and_the_source_on_a_tie_or_an_unknown_time(
        s_minutes, t_minutes, winner):
    source = Entity(SOURCE, "IT-1", _view(name="Old"),
                    None if s_minutes is None else _at(s_minutes))
    target = Entity(TARGET, "prd_9", _view(name="New"),
                    None if t_minutes is None else _at(t_minutes))
    [plan], _ = _plan([source], [target])
    [write] = plan.writes
    assert write.side == (SOURCE if winner == TARGET else TARGET)
    assert write.provenance[0].rule == "first link: newer record wins"
    assert write.provenance[0].conflict is False


def test_first_link_the_targets_only_value_goes_to_the_source():
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(gtin=None))],
                      [Entity(TARGET, "prd_9", _view(gtin="703"))])
    assert plan.writes[0].provenance == (Provenance("gtin", None, "703", TARGET,
                                                    "first link: the only value"),)


def test_first_link_an_empty_value_on_both_sides_is_left_alone():
    source = Entity(SOURCE, "IT-1", _view(gtin=""), _at(1))
    target = Entity(TARGET, "prd_9", _view(gtin=None), _at(2))
    [plan], _ = _plan([source], [target])
    assert plan.writes == ()


# --- creates ---------------------------------------------------------------------------------

def test_a_create_in_the_target_in_full():
    [plan], _ = _plan([_source(etag='"s4"', gtin="")], [])
    changes = {k: v for k, v in _view().items() if k not in ("gtin", "stock_quantity")}
    assert plan == SyncPlan(
        pair="product", outcome=CREATE_TARGET,
        link=Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", state=PENDING,
                  attempt_id="run-1", snapshot_source=_view(gtin=""), source_etag='"s4"'),
        writes=(Write(TARGET, "create", changes, idempotency_key=idempotency_key(KEY, "s:IT-1"),
                      provenance=tuple(Provenance(name, None, value, SOURCE, "create")
                                       for name, value in changes.items())),))


def test_a_create_in_the_source_in_full():
    [plan], _ = _plan([], [_target(etag='"t4"')])
    changes = {k: v for k, v in _view().items() if k not in ("gtin", "cost")}
    assert plan == SyncPlan(
        pair="product", outcome=CREATE_SOURCE,
        link=Link(pair=KEY, link_id="t:prd_1", target_id="prd_1", state=PENDING,
                  attempt_id="run-1", snapshot_target=_view(), target_etag='"t4"'),
        writes=(Write(SOURCE, "create", changes, idempotency_key=idempotency_key(KEY, "t:prd_1"),
                      provenance=tuple(Provenance(name, None, value, TARGET, "create")
                                       for name, value in changes.items())),))


def test_a_retried_create_in_the_source_keeps_its_reservation():
    reservation = Link(pair=KEY, link_id="t:prd_1", target_id="prd_1", state=PENDING,
                       attempt_id="run-0", version=2)
    [plan], _ = _plan([], [_target()], [reservation])
    assert (plan.link.link_id, plan.link.attempt_id, plan.link.version) == ("t:prd_1", "run-0",
                                                                            2)
    [plan], _ = _plan([_source()], [_target()], [reservation])
    assert (plan.outcome, plan.link.link_id, plan.link.state) == (LINK, "t:prd_1", LINKED)


@pytest.mark.parametrize("sources,targets", [([], [_target()]), ([_source()], [])])
def test_a_reservation_of_another_entity_is_not_adopted(sources, targets):
    others = [Link(pair=KEY, link_id="s:IT-9", source_id="IT-9", state=PENDING,
                   attempt_id="run-0"),
              Link(pair=KEY, link_id="t:prd_9", target_id="prd_9", state=PENDING,
                   attempt_id="run-0")]
    [plan], _ = _plan(sources, targets, others)
    assert plan.link.link_id in ("s:IT-1", "t:prd_1") and plan.link.attempt_id == "run-1"


@pytest.mark.parametrize("create,source_alone,target_alone", [
    ("to_target", CREATE_TARGET, None), ("to_source", None, CREATE_SOURCE),
    ("none", None, None)])
def test_creates_only_in_the_directions_the_pair_allows(create, source_alone, target_alone):
    pair = _pair(create=create)
    plans, _ = _plan([_source()], [], pair=pair)
    assert [p.outcome for p in plans] == ([source_alone] if source_alone else [])
    plans, _ = _plan([], [_target()], pair=pair)
    assert [p.outcome for p in plans] == ([target_alone] if target_alone else [])


def test_the_idempotency_key_is_a_fixed_length_digest_of_pair_and_link():
    key = idempotency_key(KEY, "s:IT-1")
    assert re.fullmatch(r"talksync-[0-9a-f]{32}", key)
    assert key != idempotency_key(KEY, "s:IT-2") != idempotency_key("other/product", "s:IT-1")


# --- duplicates and accounting ---------------------------------------------------------------

@pytest.mark.parametrize("side,label,ids", [(SOURCE, "Item", ("IT-1", "IT-2")),
                                            (TARGET, "Product", ("prd_1", "prd_2"))])
def test_duplicates_are_rejected_on_either_side_with_the_sides_label(side, label, ids):
    twins = [Entity(side, ids[0], _view(gtin="703")), Entity(side, ids[1], _view(gtin="704"))]
    plans, rejections = (_plan(twins, [_target()]) if side == SOURCE
                         else _plan([_source()], twins))
    message = (f"duplicate match key: 2 {side} {label} records ({', '.join(ids)}) share "
               "sku='IT-1', gtin='703'; none is linked until the key is unique in that system")
    assert plans == [] and rejections == [Rejection(side, entity_id, message) for entity_id in ids]


def test_account_group_gives_each_entity_one_place():
    plan = SyncPlan(pair="product", outcome=UPDATE, link=_link())
    sources = [_source(), Entity(SOURCE, "IT-8", {}, deleted=True),
               Entity(SOURCE, "IT-9", _view()), Entity(TARGET, "prd_5", {}, deleted=True)]
    targets = [_target(), Entity(TARGET, "prd_7", _view()), Entity(TARGET, "prd_8", _view()),
               Entity(TARGET, "prd_6", _view())]
    rejections = [Rejection(TARGET, "prd_7", "duplicate"), Rejection(TARGET, "prd_6", "dup")]
    plans, counts = account_group(sources, targets, [plan], rejections)
    assert plans == [SyncPlan(pair="product", outcome=UPDATE, link=_link(), records_read=2)]
    assert counts == {DELETED: 2, DEAD: 2, SKIPPED: 2}
    plans, counts = account_group([], [], [], [])
    assert (plans, counts) == ([], {DELETED: 0, DEAD: 0, SKIPPED: 0})


def test_account_group_counts_each_plan_its_own_entities():
    first = SyncPlan(pair="product", outcome=UPDATE, link=_link())
    second = SyncPlan(pair="product", outcome=UNCHANGED,
                      link=_link(link_id="s:IT-2", source_id="IT-2", target_id="prd_2"))
    plans, counts = account_group([_source(), Entity(SOURCE, "IT-2", _view())], [_target()],
                                  [first, second], [])
    assert [p.records_read for p in plans] == [2, 1]
    assert counts == {DELETED: 0, DEAD: 0, SKIPPED: 0}
