"""The planner's three-way merge, first-link rule, creates, duplicates — and its properties."""

import datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import LINKED, PENDING, Link
from core.planner import (
    CREATE_SOURCE,
    CREATE_TARGET,
    LINK,
    SOURCE,
    TARGET,
    UNCHANGED,
    UPDATE,
    Entity,
    idempotency_key,
    plan_group,
)
from core.spec import DATAFLOWS_DIR, load_dataflow, parse_dataflow

SPEC = load_dataflow(DATAFLOWS_DIR / "customerp-customwebshop.yaml")
PRODUCT = SPEC.pair("product")
KEY = "customerp-customwebshop/product"
T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


def _at(minutes):
    return T0 + datetime.timedelta(minutes=minutes)


def _view(**changes):
    view = {"sku": "IT-1", "name": "Kaffe", "gtin": None, "price": Decimal("10"),
            "cost": None, "vat_rate": Decimal("25"), "stock_quantity": 5}
    view.update(changes)
    return view


def _link(**snap):
    base = _view(**snap)
    return Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", target_id="prd_1", state=LINKED,
                snapshot_source=dict(base), snapshot_target=dict(base), source_etag='"1"',
                target_etag='"1"', version=3)


def _plan(sources=(), targets=(), links=(), pair=PRODUCT):
    plans, rejections = plan_group(pair, KEY, list(sources), list(targets), list(links), "run-1")
    return plans, rejections


def test_no_edits_plan_nothing_and_store_nothing():
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(), _at(1))],
                      [Entity(TARGET, "prd_1", _view(), _at(1), etag='"1"')], [_link()])
    assert plan.outcome == UNCHANGED and plan.writes == () and plan.commit is False


def test_source_edit_goes_to_target_only_changed_properties():
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(price=Decimal("12")), _at(2))],
                      [Entity(TARGET, "prd_1", _view(), _at(1), etag='"1"')], [_link()])
    assert plan.outcome == UPDATE
    [write] = plan.writes
    assert (write.side, write.kind, write.entity_id, write.etag) == (TARGET, "update", "prd_1",
                                                                    '"1"')
    assert write.changes == {"price": Decimal("12")}


def test_edits_of_different_properties_on_both_sides_merge():
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(price=Decimal("12")), _at(2))],
                      [Entity(TARGET, "prd_1", _view(name="Kaffe mørk"), _at(3))], [_link()])
    writes = {w.side: w.changes for w in plan.writes}
    assert writes == {TARGET: {"price": Decimal("12")}, SOURCE: {"name": "Kaffe mørk"}}
    assert plan.conflicts == ()
    assert plan.link.snapshot_source == plan.link.snapshot_target == _view(
        price=Decimal("12"), name="Kaffe mørk")


def test_conflict_latest_wins_and_is_reported():
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(name="ERP navn"), _at(5))],
                      [Entity(TARGET, "prd_1", _view(name="Shop name"), _at(9))], [_link()])
    [conflict] = plan.conflicts
    assert (conflict.property, conflict.source_value, conflict.target_value,
            conflict.winner) == ("name", "ERP navn", "Shop name", TARGET)
    assert conflict.rule == "latest change wins"
    assert [(w.side, dict(w.changes)) for w in plan.writes] == [(SOURCE, {"name": "Shop name"})]


def test_conflict_with_source_priority():
    pair = parse_dataflow({**_raw_spec(), "pairs": [
        {**_raw_spec()["pairs"][1], "conflict": "source"}]})
    [plan], _ = plan_group(pair.pairs[0], KEY,
                           [Entity(SOURCE, "IT-1", _view(name="ERP"), _at(1))],
                           [Entity(TARGET, "prd_1", _view(name="Shop"), _at(9))], [_link()],
                           "run")
    assert plan.conflicts[0].winner == SOURCE
    assert [w.side for w in plan.writes] == [TARGET]


def _raw_spec():
    import yaml
    return yaml.safe_load((DATAFLOWS_DIR / "customerp-customwebshop.yaml").read_text())


def test_entity_not_read_is_taken_as_its_snapshot():
    [plan], _ = _plan([], [Entity(TARGET, "prd_1", _view(stock_quantity=2), _at(3))],
                      [_link()])
    [write] = plan.writes
    assert (write.side, write.entity_id, write.etag) == (SOURCE, "IT-1", '"1"')
    assert write.changes == {"stock_quantity": 2}


def test_value_normalised_by_a_system_is_not_an_echo():
    # The webshop stores the name trimmed: after the sync the sides differ but each equals
    # its own snapshot, so nothing is written again.
    link = _link().replace(snapshot_target=_view(name="Kaffe"),
                           snapshot_source=_view(name="Kaffe "))
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(name="Kaffe "), _at(1))],
                      [Entity(TARGET, "prd_1", _view(name="Kaffe"), _at(1))], [link])
    assert plan.writes == ()


def test_immutable_key_is_never_updated():
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(), _at(1))],
                      [Entity(TARGET, "prd_1", _view(sku="RENAMED"), _at(3))], [_link()])
    assert plan.writes == ()


def test_deleted_side_is_not_propagated_by_default():
    [plan], _ = _plan([Entity(SOURCE, "IT-1", {}, _at(4), deleted=True)],
                      [Entity(TARGET, "prd_1", _view(), _at(3))], [_link()])
    assert plan.writes == () and plan.link.state == "deleted_source"


def test_first_link_non_empty_beats_empty_else_newer_wins():
    source = Entity(SOURCE, "IT-1", _view(gtin="7038010000010", name="Old"), _at(1))
    target = Entity(TARGET, "prd_9", _view(gtin=None, name="New", cost=Decimal("4")), _at(2))
    [plan], _ = _plan([source], [target])
    assert plan.outcome == LINK
    writes = {w.side: dict(w.changes) for w in plan.writes}
    assert writes == {TARGET: {"gtin": "7038010000010"},
                      SOURCE: {"name": "New", "cost": Decimal("4")}}
    assert (plan.link.link_id, plan.link.source_id, plan.link.target_id, plan.link.state) == (
        "s:IT-1", "IT-1", "prd_9", LINKED)


def test_unmatched_source_is_created_in_target_with_a_stable_idempotency_key():
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(), _at(1), etag='"4"')], [])
    assert plan.outcome == CREATE_TARGET
    assert plan.link.state == PENDING and plan.link.link_id == "s:IT-1"
    [write] = plan.writes
    assert write.kind == "create" and write.side == TARGET
    assert write.changes == {k: v for k, v in _view().items() if v is not None}
    assert write.idempotency_key == idempotency_key(KEY, "s:IT-1")
    again, _ = _plan([Entity(SOURCE, "IT-1", _view(), _at(1))], [])
    assert again[0].writes[0].idempotency_key == write.idempotency_key


def test_unmatched_target_is_created_in_source():
    [plan], _ = _plan([], [Entity(TARGET, "prd_7", _view(sku="WS-7"), _at(1))])
    assert plan.outcome == CREATE_SOURCE and plan.link.link_id == "t:prd_7"
    assert plan.writes[0].side == SOURCE and plan.writes[0].changes["sku"] == "WS-7"


def test_pending_reservation_is_adopted_by_the_matching_target():
    reservation = Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", state=PENDING,
                       attempt_id="run-0", version=1)
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(), _at(1))],
                      [Entity(TARGET, "prd_3", _view(), _at(2))], [reservation])
    assert plan.outcome == LINK and plan.writes == ()
    assert (plan.link.link_id, plan.link.target_id, plan.link.version) == ("s:IT-1", "prd_3", 1)


def test_pending_reservation_without_target_retries_the_same_create():
    reservation = Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", state=PENDING,
                       attempt_id="run-0", version=1)
    [plan], _ = _plan([Entity(SOURCE, "IT-1", _view(), _at(1))], [], [reservation])
    assert plan.outcome == CREATE_TARGET
    assert plan.link.attempt_id == "run-0" and plan.link.version == 1
    assert plan.writes[0].idempotency_key == idempotency_key(KEY, "s:IT-1")


def test_duplicate_match_keys_are_dead_lettered_not_guessed():
    plans, rejections = _plan([Entity(SOURCE, "IT-1", _view(), _at(1)),
                               Entity(SOURCE, "IT-2", _view(), _at(1))],
                              [Entity(TARGET, "prd_1", _view(), _at(1))])
    assert plans == []
    assert sorted(r.entity_id for r in rejections) == ["IT-1", "IT-2"]
    assert "duplicate match key: 2 source Product records (IT-1, IT-2) share sku='IT-1'" in \
        rejections[0].message


# --- properties ------------------------------------------------------------------------------

_names = st.sampled_from(["Kaffe", "Te", "Kakao", "Ærlig te", None])
_prices = st.sampled_from([Decimal("10"), Decimal("12.5"), Decimal("0"), None])


@st.composite
def _scenario(draw):
    base = _view(name=draw(st.sampled_from(["Kaffe", "Te"])), price=Decimal("10"))
    source = dict(base, name=draw(_names), price=draw(_prices))
    target = dict(base, name=draw(_names), price=draw(_prices))
    s_time, t_time = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    link = Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", target_id="prd_1", state=LINKED,
                snapshot_source=dict(base), snapshot_target=dict(base), version=1)
    return (Entity(SOURCE, "IT-1", source, _at(s_time)), Entity(TARGET, "prd_1", target,
                                                                  _at(t_time)), link)


def _apply(plan, source, target):
    """Both sides after the plan's writes succeed (systems store what they are sent)."""
    s, t = dict(source.view), dict(target.view)
    for write in plan.writes:
        (s if write.side == SOURCE else t).update(write.changes)
    return s, t


@settings(max_examples=300, deadline=None)
@given(_scenario())
def test_merge_converges_is_idempotent_and_deterministic(scenario):
    source, target, link = scenario
    [plan], _ = _plan([source], [target], [link])
    [again], _ = _plan([source], [target], [link])
    assert again == plan                                  # deterministic
    s, t = _apply(plan, source, target)
    assert s == t                                         # both sides agree afterwards
    committed = plan.link.replace(snapshot_source=s, snapshot_target=t)
    [rerun], _ = _plan([Entity(SOURCE, "IT-1", s, _at(9))], [Entity(TARGET, "prd_1", t, _at(9))],
                       [committed])
    assert rerun.writes == () and rerun.conflicts == ()   # idempotent: no echo


@settings(max_examples=300, deadline=None)
@given(_scenario())
def test_an_edit_on_one_side_only_is_never_dropped(scenario):
    source, target, link = scenario
    target = Entity(TARGET, "prd_1", dict(link.snapshot_target), target.modified)
    [plan], _ = _plan([source], [target], [link])
    s, t = _apply(plan, source, target)
    assert s == dict(source.view) and t == dict(source.view)


@settings(max_examples=200, deadline=None)
@given(_scenario())
def test_policy_is_symmetric_under_swapping_sides(scenario):
    source, target, link = scenario
    [plan], _ = _plan([source], [target], [link])
    for conflict in plan.conflicts:
        winner_time = source.modified if conflict.winner == SOURCE else target.modified
        loser_time = target.modified if conflict.winner == SOURCE else source.modified
        assert winner_time >= loser_time
        if winner_time == loser_time:
            assert conflict.winner == SOURCE
