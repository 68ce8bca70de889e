"""The delete policies in the planner (core/deletes.py): ignore, unlink, propagate, and the
never-silent rule for a record changed while its counterpart is deleted (issue 15, point 3)."""

from __future__ import annotations

import dataclasses
import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import (
    DELETED_BOTH,
    DELETED_SOURCE,
    DELETED_TARGET,
    LINKED,
    TOMBSTONES,
    UNLINKED,
    Link,
)
from core.planner import (
    DELETED,
    SOURCE,
    TARGET,
    UPDATE,
    Entity,
    account_group,
    other,
    plan_group,
)
from core.spec import DATAFLOWS_DIR, load_dataflow
from tests.write_path_fakes import recording_context
from transforms import plan as plan_stage

SPEC = load_dataflow(DATAFLOWS_DIR / "customerp-customwebshop.yaml")
KEY = "customerp-customwebshop/customer"
SYSTEMS = {SOURCE: "customerp", TARGET: "customwebshop"}
T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
VIEW = {"email": "a@b.no", "company_name": "Acme", "vat_number": None, "phone": "1",
        "address.line1": None, "address.line2": None, "address.postal_code": None,
        "address.city": "Oslo", "address.country": "NO"}
IDS = {SOURCE: "C-1", TARGET: "cus_1"}


def pair(policy: str):
    return dataclasses.replace(SPEC.pair("customer"), delete=policy)


def link(state: str = LINKED) -> Link:
    return Link(pair=KEY, link_id="s:C-1", source_id="C-1", target_id="cus_1", state=state,
                snapshot_source=dict(VIEW), snapshot_target=dict(VIEW), source_etag='"s1"',
                target_etag='"t1"', version=4)


def alive(side: str, **changes) -> Entity:
    return Entity(side, IDS[side], {**VIEW, **changes}, T0, etag=f'"{side[0]}2"',
                  system=SYSTEMS[side])


def deleted(side: str) -> Entity:
    return Entity(side, IDS[side], {}, T0, deleted=True, system=SYSTEMS[side])


def plan(policy, sources=(), targets=(), state=LINKED):
    plans, rejections = plan_group(pair(policy), KEY, list(sources), list(targets),
                                   [link(state)], "run", systems=SYSTEMS)
    [one] = plans
    return one, rejections


POLICIES = ["ignore", "unlink", "propagate"]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_change_to_the_survivor_in_the_same_run_is_a_conflict_naming_both(policy):
    """The issue's case: the ERP edits a customer the webshop deleted. Not 'same': a dead
    letter of the edited record naming both records, the policy and the way out."""
    the_plan, [rejection] = plan(policy, [alive(SOURCE, phone="99")], [deleted(TARGET)])

    assert (rejection.side, rejection.entity_id, rejection.error_class) == (
        SOURCE, "C-1", "conflict")
    for words in ("customerp customer C-1", "customwebshop customer cus_1", repr(policy),
                  "Restore customwebshop customer cus_1", "delete customerp customer C-1"):
        assert words in rejection.message
    assert the_plan.writes == ()          # nothing deleted, nothing synced
    assert the_plan.link.state == DELETED_TARGET and the_plan.commit


@pytest.mark.parametrize("policy", POLICIES)
def test_a_later_change_to_the_survivor_of_a_tombstone_is_the_same_conflict(policy):
    """A later run reads the deleted record no more; the tombstone remembers it."""
    the_plan, [rejection] = plan(policy, [alive(SOURCE, phone="99")], [],
                                 state=DELETED_TARGET)
    assert rejection.entity_id == "C-1" and "cus_1" in rejection.message
    assert the_plan.writes == () and not the_plan.commit


def test_ignore_keeps_the_link_as_a_tombstone_once():
    first, none = plan("ignore", [], [deleted(TARGET)])
    assert none == [] and first.writes == ()
    assert (first.outcome, first.link.state, first.commit) == (DELETED, DELETED_TARGET, True)
    again, _ = plan("ignore", [], [deleted(TARGET)], state=DELETED_TARGET)
    assert again.commit is False          # nothing new to store
    unchanged_survivor, none = plan("ignore", [alive(SOURCE)], [], state=DELETED_TARGET)
    assert none == [] and unchanged_survivor.writes == () and not unchanged_survivor.commit


def test_unlink_removes_the_link_and_writes_nothing():
    the_plan, none = plan("unlink", [deleted(SOURCE)], [])
    assert none == [] and the_plan.writes == ()
    assert (the_plan.link.state, the_plan.commit) == (UNLINKED, True)


@pytest.mark.parametrize("gone", [SOURCE, TARGET])
def test_propagate_deletes_the_survivor_guarded_by_its_version(gone):
    the_plan, none = plan("propagate", *(([deleted(SOURCE)], []) if gone == SOURCE
                                         else ([], [deleted(TARGET)])))
    survivor = other(gone)
    [write] = the_plan.writes
    assert none == []
    assert (write.side, write.kind, write.entity_id, write.etag) == (
        survivor, "delete", IDS[survivor], f'"{survivor[0]}1"')   # the link's ETag: not read
    assert the_plan.link.state == DELETED_BOTH and the_plan.outcome == DELETED


def test_propagate_of_a_survivor_read_unchanged_uses_the_version_read():
    the_plan, _ = plan("propagate", [alive(SOURCE)], [deleted(TARGET)])
    [write] = the_plan.writes
    assert (write.side, write.etag) == (SOURCE, '"s2"')


def test_a_tombstone_turns_into_propagate_when_the_policy_changes_to_it():
    the_plan, _ = plan("propagate", [], [deleted(TARGET)], state=DELETED_TARGET)
    assert [w.kind for w in the_plan.writes] == ["delete"]


def test_both_deleted_is_a_tombstone_of_both_sides_whatever_the_policy():
    for policy in POLICIES:
        the_plan, none = plan(policy, [deleted(SOURCE)], [deleted(TARGET)])
        assert none == [] and the_plan.writes == () and the_plan.link.state == DELETED_BOTH


@pytest.mark.parametrize("tombstone, restored", [(DELETED_TARGET, TARGET),
                                                 (DELETED_SOURCE, SOURCE)])
def test_a_restored_record_makes_the_link_live_and_sync_resumes(tombstone, restored):
    """A soft delete undone: the record is read alive again; the survivor's edit made while it
    was deleted travels now."""
    survivor = other(restored)
    entities = {restored: alive(restored), survivor: alive(survivor, phone="42")}
    the_plan, none = plan("ignore", [entities[SOURCE]], [entities[TARGET]], state=tombstone)
    assert none == []
    assert the_plan.link.state == LINKED and the_plan.commit and the_plan.outcome == UPDATE
    [write] = the_plan.writes
    assert (write.side, dict(write.changes)) == (restored, {"phone": "42"})


def test_a_record_read_alive_again_after_a_propagated_delete_is_a_conflict_not_deleted_again():
    the_plan, [rejection] = plan("propagate", [], [alive(TARGET)], state=DELETED_BOTH)
    assert rejection.entity_id == "cus_1" and the_plan.writes == ()
    assert the_plan.link.state == DELETED_BOTH and not the_plan.commit


@pytest.mark.parametrize("policy", ["ignore", "unlink", "propagate"])
def test_a_record_our_delete_deactivated_reads_back_as_nothing_to_do(policy):
    """Business Central's delete is a deactivation (``blocked``): the record reads alive, at
    the version our delete left on the link. That is our own write, not a restore: no letter,
    no second delete, nothing stored (it was a conflict and a second delete before)."""
    ours = dataclasses.replace(alive(TARGET), etag='"t1"')      # the link's target version
    the_plan, rejections = plan(policy, [], [ours], state=DELETED_BOTH)
    assert rejections == [] and the_plan.writes == ()
    assert the_plan.link.state == DELETED_BOTH and not the_plan.commit


def test_a_deactivated_record_changed_after_our_delete_is_a_conflict():
    touched = dataclasses.replace(alive(TARGET), etag='"t9"')
    the_plan, [rejection] = plan("propagate", [], [touched], state=DELETED_BOTH)
    assert rejection.entity_id == "cus_1" and the_plan.writes == ()


def test_a_deleted_record_counts_as_deleted_and_the_edited_survivor_as_dead():
    sources, targets = [alive(SOURCE, phone="99")], [deleted(TARGET)]
    plans, rejections = plan_group(pair("ignore"), KEY, sources, targets, [link()], "run",
                                   systems=SYSTEMS)
    plans, counts = account_group(sources, targets, plans, rejections)
    assert counts == {DELETED: 1, "dead": 1, "skipped": 0}
    assert plans[0].records_read == 0


# --- properties --------------------------------------------------------------------------

_SIDE_STATES = st.sampled_from(["absent", "deleted", "same", "edited"])


def _entity(side: str, state: str) -> list[Entity]:
    if state == "absent":
        return []
    if state == "deleted":
        return [deleted(side)]
    return [alive(side, **({"phone": f"{side}-edit"} if state == "edited" else {}))]


@settings(max_examples=300, deadline=None)
@given(policy=st.sampled_from(POLICIES), state=st.sampled_from([LINKED, *TOMBSTONES]),
       source=_SIDE_STATES, target=_SIDE_STATES)
def test_a_changed_record_is_never_deleted_nor_silent(policy, state, source, target):
    """Whatever the policy and the tombstone: a delete write only ever goes to a record not
    changed since its snapshot; a changed record whose counterpart is gone is rejected; a
    delete is only planned under ``propagate``, and only unlink removes a link."""
    sources, targets = _entity(SOURCE, source), _entity(TARGET, target)
    plans, rejections = plan_group(pair(policy), KEY, sources, targets, [link(state)], "run",
                                   systems=SYSTEMS)
    [the_plan] = plans
    read = {SOURCE: source, TARGET: target}
    for write in the_plan.writes:
        if write.kind == "delete":
            assert policy == "propagate"
            assert read[write.side] in ("absent", "same")
    rejected = {r.entity_id for r in rejections}
    for side in (SOURCE, TARGET):
        if read[side] == "edited" and the_plan.link.state != LINKED:
            assert IDS[side] in rejected or the_plan.link.state == UNLINKED
    if the_plan.link.state == UNLINKED:
        assert policy == "unlink"
    if rejections:
        assert the_plan.writes == ()
        assert all(r.error_class == "conflict" and IDS[SOURCE] in r.message
                   and IDS[TARGET] in r.message for r in rejections)
    plans, counts = account_group(sources, targets, plans, rejections)
    assert sum(counts.values()) + plans[0].records_read == len(sources) + len(targets)


def test_decimal_views_compare_by_value():
    """A survivor read back with the same values (a Decimal with another exponent) is not
    changed: no rejection."""
    product = dataclasses.replace(SPEC.pair("product"), delete="ignore")
    view = {"sku": "IT-1", "name": "Kaffe", "gtin": None, "price": Decimal("10"), "cost": None,
            "vat_rate": Decimal("25"), "stock_quantity": 5}
    stored = Link(pair="p", link_id="s:IT-1", source_id="IT-1", target_id="cus_1",
                  snapshot_source=view, snapshot_target=view)
    survivor = Entity(SOURCE, "IT-1", {**view, "price": Decimal("10.00")}, T0)
    plans, rejections = plan_group(product, "p", [survivor], [deleted(TARGET)], [stored], "r")
    assert rejections == [] and plans[0].link.state == DELETED_TARGET


# --- the full rescan's look-up of linked records not read (transforms/plan.py) ----------------

class _Lookup:
    """A connector whose ``get`` finds the ids in ``present``; counts its look-ups."""

    name = "erp"
    request_count = 0

    def __init__(self, present=()):
        self.present = set(present)
        self.asked: list[str] = []

    def get(self, entity, ids):
        self.asked += list(ids)
        return [object() for i in ids if i in self.present]

    def close(self):
        pass


@pytest.mark.parametrize("present, state", [((), DELETED_SOURCE), (("C-1",), LINKED)])
def test_a_full_rescan_looks_up_a_linked_record_it_did_not_read(tmp_path, monkeypatch,
                                                                present, state):
    ctx = recording_context(tmp_path)
    connector = _Lookup(present)
    monkeypatch.setattr(plan_stage, "connector_for", lambda system: connector)
    stored = link().replace(pair=ctx.pair_key)
    fn = plan_stage._PlanGroupsFn(ctx, verify_missing=True)
    fn.setup()
    [the_plan] = list(fn._plan([alive(TARGET), stored]))      # one group, its link read
    assert connector.asked == ["C-1"]            # the target was read: only the source looked up
    assert the_plan.link.state == state
    assert ctx.counters.get("read_source", 0) == (0 if present else 1)


def test_an_incremental_run_never_takes_a_record_not_read_for_deleted(tmp_path, monkeypatch):
    ctx = recording_context(tmp_path)
    connector = _Lookup()
    monkeypatch.setattr(plan_stage, "connector_for", lambda system: connector)
    fn = plan_stage._PlanGroupsFn(ctx)
    fn.setup()
    [the_plan] = list(fn._plan([alive(TARGET), link().replace(pair=ctx.pair_key)]))
    assert connector.asked == [] and the_plan.link.state == LINKED
