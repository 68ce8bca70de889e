"""One pair's whole sync as one composite transform: read, map, plan, write, commit."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import apache_beam as beam

from core.model import committed_state
from core.planner import SOURCE, TARGET, SyncPlan
from transforms import breaker, finish, plan, read, write
from transforms.common import PairContext


@dataclasses.dataclass(frozen=True)
class ReadPosition:
    """Where one side's read starts (None: everything) and which entities it reads again."""

    since: str | None = None
    retry_ids: Sequence[str] = ()


class SyncPairResult(NamedTuple):
    """What :class:`SyncPair` outputs: PCollections named as Beam's BigQuery ``WriteResult``
    names its own. A named tuple, so Beam registers each field as a named output of the
    composite (as it did a dict's keys). The last four are None in plan mode. The dead
    letters, watermarks and held pairs come as the PCollections they are made of, for the
    run to flatten once with the other pairs' (a Flatten of a Flatten costs Beam's local
    runner a stage per pair)."""

    #: the pair's plans (:class:`~core.planner.SyncPlan`)
    plans: beam.PCollection
    #: the links committed this run (in plan mode, the links the plan would make, with
    #: placeholder ids for entities to be created)
    links: beam.PCollection
    #: every dead letter of the pair (more than one per entity is possible)
    dead_letters: tuple[beam.PCollection, ...]
    #: (pair, system, newest modified time) of each side's changed read
    watermarks: tuple[beam.PCollection, ...]
    #: the conflicts settled by the committed plans (rows of conflicts.jsonl)
    conflicts: beam.PCollection | None = None
    #: the number of links committed, per bundle: a barrier for the watermarks
    committed: beam.PCollection | None = None
    #: the audit events of what was committed
    audit: beam.PCollection | None = None
    #: the pair's name (once or more) if the circuit breaker held its changes back (more than
    #: ``max_updates`` planned updates, not confirmed) or the read of a side failed, and the
    #: pair was not planned at all
    held: tuple[beam.PCollection, ...] | None = None


class SyncPair(beam.PTransform):
    """Syncs one pair (docs/architecture.md, "One record's path through a run", steps 1–7).

    ``positions`` gives the read position of each side; ``reference_inputs`` the side inputs
    with this run's links of the pairs this one refers to; ``kept_letters`` the pair's letters
    kept as permanent, carried into this run's unless their records are read again. With
    ``apply_changes=False`` (plan mode) nothing is reserved, written or committed.
    ``verify_missing`` (a full rescan) looks up the linked records the reads did not return,
    to see hard deletes (:class:`~transforms.plan.PlanSync`). Applied to
    the pipeline; returns a :class:`SyncPairResult`.
    """

    def __init__(self, ctx: PairContext, positions: dict, reference_inputs: dict,
                 apply_changes: bool = True,
                 max_updates: int = breaker.DEFAULT_MAX_UPDATES,
                 confirm_mass_changes: bool = False, kept_letters: Sequence = (),
                 max_deletes: int = breaker.DEFAULT_MAX_DELETES, verify_missing: bool = False):
        super().__init__()
        self._kept = list(kept_letters)
        self._ctx = ctx
        self._positions = positions
        self._refs = reference_inputs
        self._apply = apply_changes
        self._max_updates = max_updates
        self._max_deletes = max_deletes
        self._verify_missing = verify_missing
        self._confirm = confirm_mass_changes

    # No return annotation: Beam reads it as the output type hint and warns, once per pair,
    # that a SyncPairResult is not a type it can use (the result is documented above).
    def expand(self, pbegin):
        ctx = self._ctx
        keyed, dead, watermarks, failed = [], [], [], []
        for side in (SOURCE, TARGET):
            position = self._positions[side]
            system = ctx.system(side).name
            records = pbegin | f"Read {side}" >> read.ReadChanges(
                ctx, side, position.since, position.retry_ids)
            dead.extend(records.dead_letters)
            failed.append(records.read_failed)
            watermarks.append(records.watermarks)
            kept = [letter for letter in self._kept if letter.system == system]
            if kept:
                dead.append(records.records | f"Carry kept letters {side}" >>
                            finish.CarryKeptLetters(ctx.run_id, kept))
            mapped = records.records | f"Map {side}" >> read.MapToViews(ctx, side, self._refs)
            # each side looked up where it was read and mapped (one fused stage), so an
            # entity is coded only once before planning: packed for the shuffle
            keyed.append(mapped.entities | f"LookUpLinks {side}" >> plan.LookUpLinks(ctx))
            dead.append(mapped.dead_letters)
        failed_reads = failed | "Failed reads" >> beam.Flatten()
        planned = (keyed
                   | "Both sides" >> beam.Flatten().with_output_types(plan.KEYED_ITEM)
                   | "Plan" >> plan.PlanSync(ctx, verify_missing=self._verify_missing,
                                             failed_reads=failed_reads))
        dead.append(planned.dead_letters)
        if not self._apply:
            planned.plans | "Count plans" >> beam.Map(lambda p, ctx=ctx: write.count_plan(ctx, p))
            return SyncPairResult(
                plans=planned.plans,
                links=planned.plans | "Planned links" >> beam.Map(_planned_link),
                dead_letters=tuple(dead), watermarks=tuple(watermarks))
        gated = (planned.plans
                 | "Drop unchanged" >> beam.ParDo(_DropUnchangedFn(ctx))
                 | "HoldMassChanges" >> breaker.HoldMassChanges(
                     ctx, self._max_updates, self._confirm, self._max_deletes))
        reserved = gated.plans | "ReserveLinks" >> write.ReserveLinks(ctx)
        changes = reserved.plans
        written = changes | "Write" >> write.WriteChanges(ctx, self._refs)
        committed = (changes, written.outcomes) | "CommitLinks" >> write.CommitLinks(ctx)
        dead += [reserved.dead_letters, written.dead_letters, committed.dead_letters]
        return SyncPairResult(
            plans=planned.plans, links=committed.links,
            dead_letters=tuple(dead), watermarks=tuple(watermarks),
            conflicts=committed.conflicts, committed=committed.committed,
            audit=committed.audit, held=(gated.held, *failed))


class _DropUnchangedFn(beam.DoFn):
    """Passes on the plans that write or store something; counts the others as unchanged."""

    def __init__(self, ctx: PairContext):
        self._ctx = ctx

    def process(self, plan_: SyncPlan):
        if plan_.writes or plan_.commit:
            yield plan_
        else:
            write.count_plan(self._ctx, plan_)


def _planned_link(plan_: SyncPlan):
    link = plan_.link
    return link.replace(source_id=link.source_id or f"(new) {link.target_id}",
                        target_id=link.target_id or f"(new) {link.source_id}",
                        state=committed_state(link.state))
