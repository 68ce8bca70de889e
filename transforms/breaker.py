"""The circuit breaker for mass changes: a pair that plans more updates (or more deletes) than
its limit writes nothing this run, unless the run confirms them.

A mapping edited by mistake, a bulk price import in the ERP or a system that suddenly answers
with blank fields can turn one run into thousands of overwrites on the other side. The planner
cannot tell a mistake from an intended mass change, so the breaker asks: when a pair plans more
than ``limit`` updates (both directions together), its changes are held back, nothing of the
pair is reserved, written or committed, its watermarks stay where they were (so the next run
reads the same changes again) and the run reports the pair as held with the flag that confirms
it, ``--confirm_mass_changes``. Creates are not counted: they add records and never overwrite.

Deletes have their own, smaller limit (``delete_limit``, ``--max_deletes_per_pair``): a
propagated delete (delete policy ``propagate``) removes a record, and an unlink forgets a link,
so a mass delete in one system (or a read that suddenly misses records) must not empty the
other. Both are counted together, per pair and run (docs/deletes.md).

The count needs every plan of the pair, so the gate waits for planning to finish (a side input)
before the first change of the pair goes out.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import apache_beam as beam

from core import planner
from core.model import UNLINKED
from core.planner import SyncPlan
from transforms.common import PROGRESS_LOGGER, CallOnce, PairContext, in_global_window
from transforms.write import count_entities

_HELD = "held"
#: the counter of the updates a held pair planned (the report's ``held_updates``)
HELD_UPDATES = "held_updates"
#: the counter of the deletes and unlinks a held pair planned (the report's ``held_deletes``)
HELD_DELETES = "held_deletes"
#: the default limit of planned updates per pair and run
DEFAULT_MAX_UPDATES = 1000
#: the default limit of planned deletes and unlinks per pair and run
DEFAULT_MAX_DELETES = 100
CONFIRM_FLAG = "--confirm_mass_changes"

_LOG = logging.getLogger(PROGRESS_LOGGER)


def planned_updates(plan_: SyncPlan) -> int:
    return sum(1 for write in plan_.writes if write.kind == "update")


def planned_deletes(plan_: SyncPlan) -> int:
    """The deletes a plan writes, and its unlink (a link forgotten) if it is one."""
    return (sum(1 for write in plan_.writes if write.kind == "delete")
            + (plan_.link.state == UNLINKED))


class HoldMassChangesResult(NamedTuple):
    """What :class:`HoldMassChanges` outputs."""

    #: the pair's plans if it was not held, else none
    plans: beam.PCollection
    #: the pair's name if it was held (0 or 1 element)
    held: beam.PCollection


class HoldMassChanges(beam.PTransform):
    """Passes a pair's plans on when its planned updates are within ``limit`` and its planned
    deletes and unlinks within ``delete_limit`` (or ``confirmed``); otherwise passes none.
    Returns a :class:`HoldMassChangesResult`."""

    def __init__(self, ctx: PairContext, limit: int, confirmed: bool,
                 delete_limit: int = DEFAULT_MAX_DELETES):
        super().__init__()
        if limit < 0:
            raise ValueError(f"max_updates_per_pair must be 0 or more, not {limit}")
        if delete_limit < 0:
            raise ValueError(f"max_deletes_per_pair must be 0 or more, not {delete_limit}")
        self._ctx = ctx
        self._limits = (limit, delete_limit)
        self._confirmed = confirmed

    def expand(self, plans):
        changes = plans | "Count changes" >> beam.ParDo(_CountChangesFn())
        verdict = plans.pipeline | "Judge" >> CallOnce(beam.ParDo(
            _JudgeFn(self._ctx, self._limits, self._confirmed),
            changes=beam.pvalue.AsList(changes)).with_outputs(_HELD, main="hold"))
        passed = plans | "Gate" >> beam.ParDo(
            _GateFn(self._ctx), hold=beam.pvalue.AsSingleton(verdict.hold))
        return HoldMassChangesResult(plans=passed, held=verdict[_HELD])


class _CountChangesFn(beam.DoFn):
    """The (updates, deletes) the plans of a bundle hold, one element per bundle: what the
    judge adds up is a few elements long however many plans there are."""

    def start_bundle(self):
        self._updates = self._deletes = 0

    def process(self, plan_: SyncPlan):
        self._updates += planned_updates(plan_)
        self._deletes += planned_deletes(plan_)
        return ()

    def finish_bundle(self):
        yield from in_global_window([(self._updates, self._deletes)])


class _JudgeFn(beam.DoFn):
    """Once the counts of every bundle are in: holds the pair back or lets it through
    (``True``: held), and names a held pair in the ``held`` output."""

    def __init__(self, ctx: PairContext, limits: tuple[int, int], confirmed: bool):
        self._ctx = ctx
        self._limits = limits
        self._confirmed = confirmed

    def process(self, _, changes: list[tuple[int, int]]):
        updates = sum(planned_u for planned_u, _ in changes)
        deletes = sum(planned_d for _, planned_d in changes)
        limit, delete_limit = self._limits
        hold = (updates > limit or deletes > delete_limit) and not self._confirmed
        if hold:
            # each limit passed is counted (and said) on its own: the report names the
            # reason, so the message never blames updates for a mass delete
            if updates > limit:
                self._ctx.counter(HELD_UPDATES).inc(updates)
                _LOG.warning(held_message(self._ctx.pair.name, updates, limit))
            if deletes > delete_limit:
                self._ctx.counter(HELD_DELETES).inc(deletes)
                _LOG.warning(held_deletes_message(self._ctx.pair.name, deletes, delete_limit))
            yield beam.pvalue.TaggedOutput(_HELD, self._ctx.pair.name)
        yield hold


def held_message(pair: str, updates: int, limit: int) -> str:
    return (f"pair {pair}: {updates} updates planned, over the limit of {limit} "
            f"(--max_updates_per_pair); nothing of this pair was written. If these changes are "
            f"intended, run again with {CONFIRM_FLAG}")


def held_deletes_message(pair: str, deletes: int, limit: int) -> str:
    return (f"pair {pair}: {deletes} deletes and unlinks planned, over the limit of {limit} "
            f"(--max_deletes_per_pair); nothing of this pair was written. If these deletes are "
            f"intended, run again with {CONFIRM_FLAG}")


class _GateFn(beam.DoFn):
    """Passes the plans on, or counts their entities as held back."""

    def __init__(self, ctx: PairContext):
        self._ctx = ctx

    def process(self, plan_: SyncPlan, hold: bool):
        if hold:
            count_entities(self._ctx, plan_, planner.HELD)
        else:
            yield plan_
