"""The circuit breaker's parts (transforms/breaker.py), one at a time and without a pipeline:
the count of planned updates, the verdict at and around the limit, the message that names the
flag, and the gate. The whole breaker in a run is tests/test_safeguards.py."""

from __future__ import annotations

import dataclasses
import logging

import apache_beam as beam
import pytest

from core.model import UNLINKED, Link
from core.planner import HELD, SyncPlan, Write
from tests.write_path_fakes import recording_context
from transforms import breaker
from transforms.breaker import (
    HoldMassChanges,
    held_deletes_message,
    held_message,
    planned_deletes,
    planned_updates,
)


def _plan(*kinds: str, records_read: int = 2) -> SyncPlan:
    writes = tuple(Write(side="target" if n % 2 else "source", kind=kind, changes={"name": "x"})
                   for n, kind in enumerate(kinds))
    return SyncPlan(pair="products", outcome="updated", link=Link("products", "s:1", "1", "2"),
                    writes=writes, records_read=records_read)


def test_only_updates_are_counted():
    assert planned_updates(_plan()) == 0
    assert planned_updates(_plan("create")) == 0
    assert planned_updates(_plan("update", "create", "update")) == 2


def test_a_negative_limit_is_refused_and_zero_is_allowed(tmp_path):
    ctx = recording_context(tmp_path)
    with pytest.raises(ValueError) as caught:
        HoldMassChanges(ctx, -1, confirmed=False)
    assert str(caught.value) == "max_updates_per_pair must be 0 or more, not -1"
    HoldMassChanges(ctx, 0, confirmed=False)


def _judge(tmp_path, updates: int, limit: int, confirmed: bool = False, deletes: int = 0,
           delete_limit: int = breaker.DEFAULT_MAX_DELETES):
    ctx = recording_context(tmp_path)
    out = list(breaker._JudgeFn(ctx, (limit, delete_limit), confirmed).process(
        b"", [(updates, deletes)]))
    return ctx, out


def test_deletes_and_unlinks_are_counted_apart_from_updates():
    assert planned_deletes(_plan("update", "create")) == 0
    assert planned_deletes(_plan("delete", "update")) == 1
    unlink = dataclasses.replace(_plan(), link=Link("products", "s:1", "1", "2",
                                                    state=UNLINKED))
    assert planned_deletes(unlink) == 1 and planned_updates(unlink) == 0


def test_over_the_delete_limit_the_pair_is_held_and_the_message_says_deletes(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ctx, out = _judge(tmp_path, updates=3, limit=5, deletes=4, delete_limit=3)
    [held, verdict] = out
    assert held.value == ctx.pair.name and verdict is True
    assert ctx.counters == {breaker.HELD_DELETES: 4}      # updates within theirs: not blamed
    assert [r.getMessage() for r in caplog.records] == [
        held_deletes_message(ctx.pair.name, 4, 3)]
    assert "--max_deletes_per_pair" in caplog.records[0].getMessage()
    _, confirmed = _judge(tmp_path, updates=0, limit=5, deletes=4, delete_limit=3,
                          confirmed=True)
    assert confirmed == [False]


def test_over_the_limit_the_pair_is_held_counted_and_named(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ctx, out = _judge(tmp_path, updates=6, limit=5)
    [held, verdict] = out
    assert isinstance(held, beam.pvalue.TaggedOutput)
    assert (held.tag, held.value) == ("held", ctx.pair.name)
    assert verdict is True
    assert ctx.counters == {breaker.HELD_UPDATES: 6}
    assert [r.getMessage() for r in caplog.records] == [held_message(ctx.pair.name, 6, 5)]


@pytest.mark.parametrize(("updates", "limit", "confirmed"), [
    (5, 5, False),      # at the limit: within it
    (0, 0, False),
    (6, 5, True),       # over it but confirmed
])
def test_within_the_limit_or_confirmed_nothing_is_held(tmp_path, caplog, updates, limit,
                                                       confirmed):
    with caplog.at_level(logging.WARNING):
        ctx, out = _judge(tmp_path, updates, limit, confirmed)
    assert out == [False]
    assert ctx.counters == {}
    assert caplog.records == []


def test_the_message_names_the_counts_the_option_and_the_flag():
    assert held_message("products", 1200, 1000) == (
        "pair products: 1200 updates planned, over the limit of 1000 (--max_updates_per_pair); "
        "nothing of this pair was written. If these changes are intended, run again with "
        "--confirm_mass_changes")


def test_the_gate_passes_plans_or_counts_them_as_held(tmp_path):
    ctx = recording_context(tmp_path)
    plan = _plan("update", records_read=2)
    gate = breaker._GateFn(ctx)
    assert list(gate.process(plan, hold=False)) == [plan]
    assert ctx.counters == {}
    assert list(gate.process(plan, hold=True)) == []
    assert ctx.counters == {HELD: 2}


def test_the_changes_of_every_bundle_are_added_up_before_the_judge_decides(tmp_path):
    count = breaker._CountChangesFn()
    per_bundle = []
    for bundle in ([_plan("update", "update"), _plan("delete")], [_plan("update")], []):
        count.start_bundle()
        for plan in bundle:
            assert list(count.process(plan)) == []
        per_bundle += [windowed.value for windowed in count.finish_bundle()]
    assert per_bundle == [(2, 1), (1, 0), (0, 0)]
    ctx = recording_context(tmp_path)
    judge = breaker._JudgeFn(ctx, (2, breaker.DEFAULT_MAX_DELETES), False)
    [held, verdict] = judge.process(b"", per_bundle)
    assert held.value == ctx.pair.name and verdict is True       # 3 updates over 2
    assert ctx.counters == {breaker.HELD_UPDATES: 3}
    assert list(breaker._JudgeFn(ctx, (3, 1), False).process(b"", per_bundle)) == [False]
