"""Every conflict policy (``conflict:`` of a pair: latest, source, target), with the source's
edit newer and older than the target's: who wins, what is written where, what the link keeps.

Every shipped dataflow uses ``latest``, so a ``target`` policy that chose the source went
unnoticed (issue 19). The end-to-end run with ``conflict: target`` is in
tests/test_orders_customerp_customwebshop.py.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
import yaml

from core.model import LINKED, Link
from core.planner import SOURCE, TARGET, UPDATE, Entity, plan_group
from core.spec import DATAFLOWS_DIR, parse_dataflow

KEY = "customerp-customwebshop/product"
T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
BASE = {"sku": "IT-1", "name": "Kaffe", "gtin": None, "price": Decimal(10), "cost": None,
        "vat_rate": Decimal(25), "stock_quantity": 5}
EDITS = {SOURCE: "ERP-navn", TARGET: "Shop name"}


def product_pair(policy: str):
    raw = yaml.safe_load((DATAFLOWS_DIR / "customerp-customwebshop.yaml").read_text())
    [product] = [pair for pair in raw["pairs"] if pair["name"] == "product"]
    return parse_dataflow({**raw, "pairs": [{**product, "conflict": policy}]}).pairs[0]


def at(minute: int) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minute)


def plan_conflict(policy: str, source_minute: int, target_minute: int):
    """Both sides renamed the linked product since the last sync, at the given minutes."""
    link = Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", target_id="prd_1", state=LINKED,
                snapshot_source=dict(BASE), snapshot_target=dict(BASE), source_etag='"1"',
                target_etag='"1"', version=3)
    source = Entity(SOURCE, "IT-1", {**BASE, "name": EDITS[SOURCE]}, at(source_minute), etag='"2"')
    target = Entity(TARGET, "prd_1", {**BASE, "name": EDITS[TARGET]}, at(target_minute),
                    etag='"2"')
    [plan], rejections = plan_group(product_pair(policy), KEY, [source], [target], [link], "run")
    assert rejections == []
    return plan


@pytest.mark.parametrize("policy, source_is, winner, rule", [
    ("latest", "newer", SOURCE, "latest change wins"),
    ("latest", "older", TARGET, "latest change wins"),
    ("latest", "as old", SOURCE, "latest change wins (same time: source)"),
    ("source", "newer", SOURCE, "source priority"),
    ("source", "older", SOURCE, "source priority"),
    ("target", "newer", TARGET, "target priority"),
    ("target", "older", TARGET, "target priority"),
])
def test_the_policy_picks_the_winner_and_only_the_loser_is_written(policy, source_is, winner,
                                                                   rule):
    source_minute = {"newer": 9, "older": 1, "as old": 5}[source_is]
    plan = plan_conflict(policy, source_minute, target_minute=5)

    loser = TARGET if winner == SOURCE else SOURCE
    [conflict] = plan.conflicts
    assert (conflict.property, conflict.source_value, conflict.target_value) == (
        "name", EDITS[SOURCE], EDITS[TARGET])
    assert (conflict.winner, conflict.rule) == (winner, rule)
    assert plan.outcome == UPDATE
    assert [(w.side, dict(w.changes), w.etag) for w in plan.writes] == [
        (loser, {"name": EDITS[winner]}, '"2"')]
    expected = {**BASE, "name": EDITS[winner]}
    assert plan.link.snapshot_source == plan.link.snapshot_target == expected


@pytest.mark.parametrize("policy", ["latest", "source", "target"])
def test_an_edit_on_one_side_is_no_conflict_whatever_the_policy(policy):
    """The policy settles conflicts only: an edit the other side did not touch always travels."""
    link = Link(pair=KEY, link_id="s:IT-1", source_id="IT-1", target_id="prd_1", state=LINKED,
                snapshot_source=dict(BASE), snapshot_target=dict(BASE), version=1)
    for edited, other in ((SOURCE, TARGET), (TARGET, SOURCE)):
        views = {edited: {**BASE, "price": Decimal(12)}, other: dict(BASE)}
        [plan], _ = plan_group(
            product_pair(policy), KEY, [Entity(SOURCE, "IT-1", views[SOURCE], T0)],
            [Entity(TARGET, "prd_1", views[TARGET], T0)], [link], "run")
        assert plan.conflicts == ()
        assert [(w.side, dict(w.changes)) for w in plan.writes] == [(other, {"price": Decimal(12)})]
