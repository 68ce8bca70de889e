"""Reserving links, writing planned changes and committing links (docs/architecture.md, "One
record's path through a run", steps 5–7).

Writes are keyed by system and shard and batched, so each system sees a bounded number of
writers per pair (``write_shards``) however many workers run, and full batches (the webshop's
``:batch`` endpoint takes 100 operations per request). A create is made safe
against retries and crashes in three steps: reserve the link in the store (pending), send the
create with an idempotency key derived from the link id, then commit the link. A later attempt
finds the pending link, and the system either replays the first result (idempotency key), answers
with the existing entity (duplicate key), or the entity is matched by key when it is read again;
in every case it is adopted, never created twice.

A link is committed only when every write planned for it succeeded; otherwise it keeps its old
snapshots, so the next run sees the same difference and tries again.

After each batch of writes, the origins of the values written (who edited each one where, and
when) are saved with the version each record is at now (docs/decisions/0015): a later read of
a record still at that version, in any dataflow, compares people's edit times. A crash before
that save leaves no entry (or an older one for an older version), which reads as before.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import apache_beam as beam

from connectors import connector_for
from connectors.linkstore import StaleLinkError
from connectors.stores import open_link_store
from core.mapping import MappingError, PairMapper
from core.model import (
    LINKED,
    PENDING,
    UNLINKED,
    Link,
    Record,
    SystemConfig,
    WriteOp,
    committed_state,
)
from core.planner import (
    CREATE_SOURCE,
    CREATE_TARGET,
    DEAD,
    LINK,
    SOURCE,
    TARGET,
    UNCHANGED,
    SyncPlan,
    Write,
    other,
)
from core.provenance import OriginWrite, RecordOrigins, Version
from transforms import audit
from transforms.common import (
    BufferedStoreFn,
    ExistenceCheck,
    PairContext,
    RequestCounting,
    Resolver,
    in_global_window,
    progress,
    reference_stage,
    system_fields,
    this_run_links,
)

_LOG = logging.getLogger(__name__)

_DEAD_LETTERS = "dead_letters"
_CONFLICTS = "conflicts"
_AUDIT = "audit"
_COMMITTED = "committed"
_BATCH_SIZE = 100
#: concurrent writers per pair and system unless its ``write_shards`` setting says otherwise
DEFAULT_WRITE_SHARDS = 1
_COMMIT_BATCH = 200
#: reservations per link-store round trip
_RESERVE_BATCH = 200


@dataclasses.dataclass(frozen=True)
class WriteOutcome:
    """The result of one planned write: the entity as the system now has it, or a failure."""

    link_id: str
    side: str
    ok: bool
    entity_id: str | None = None
    etag: str | None = None
    view: Mapping[str, Any] | None = None


class ReserveLinksResult(NamedTuple):
    """What :class:`ReserveLinks` outputs."""

    #: the plans to carry out, those that make a link with their reservation's version
    plans: beam.PCollection
    #: the plans whose reservation clashed with another link's
    dead_letters: beam.PCollection


class ReserveLinks(beam.PTransform):
    """Reserves, before anything is written, the links that creates and first links will make.

    The reservation (a ``pending`` link holding every id known so far) is what makes a retry
    safe: the next run reads each of its entities again, whatever their modified times, so a
    create whose answer was lost is adopted and a first link whose writes failed is matched
    again, instead of either side being created a second time. Plans whose link another run
    committed meanwhile are dropped; a reservation held under another link id is a
    ``conflict`` dead letter, planned again next run. Returns a :class:`ReserveLinksResult`.
    """

    def __init__(self, ctx: PairContext):
        super().__init__()
        self._ctx = ctx

    def expand(self, plans):
        reserved = plans | "Reserve" >> beam.ParDo(_ReserveLinksFn(self._ctx)).with_outputs(
            _DEAD_LETTERS, main="plans")
        return ReserveLinksResult(plans=reserved.plans, dead_letters=reserved[_DEAD_LETTERS])


class _ReserveLinksFn(BufferedStoreFn):
    """Reserves in batches: one link-store round trip per :data:`_RESERVE_BATCH` reservations."""

    batch_size = _RESERVE_BATCH

    def process(self, plan: SyncPlan):
        if plan.outcome not in (CREATE_TARGET, CREATE_SOURCE, LINK):
            yield plan
            return
        yield from self.buffer(plan)

    def flush_batch(self, plans: list[SyncPlan]):
        wanted = [plan.link.replace(state=PENDING,
                                    attempt_id=plan.link.attempt_id or self._ctx.run_id)
                  for plan in plans]
        for plan, want, stored in zip(plans, wanted, self._store.reserve_many(wanted), strict=True):
            yield from self._decide(plan, want, stored)

    def _decide(self, plan: SyncPlan, wanted: Link, stored: Link):
        if stored.state == LINKED and (stored.source_id, stored.target_id) == (
                plan.link.source_id, plan.link.target_id):
            count_entities(self._ctx, plan, UNCHANGED)
            return      # another run linked exactly these: nothing left to do
        if stored.link_id != wanted.link_id or stored.state == LINKED:
            count_entities(self._ctx, plan, DEAD)
            yield beam.pvalue.TaggedOutput(_DEAD_LETTERS, self._ctx.dead_letter(
                side=SOURCE if plan.link.source_id else TARGET,
                entity_id=plan.link.source_id or plan.link.target_id, stage="reserve",
                error_class="conflict", direction="link",
                message=f"link {wanted.link_id} clashes with link {stored.link_id} "
                        f"({stored.state}) holding the same id; planned again on the next run"))
            return
        yield dataclasses.replace(plan, link=plan.link.replace(
            version=stored.version, attempt_id=stored.attempt_id))


class WriteChangesResult(NamedTuple):
    """What :class:`WriteChanges` outputs."""

    #: (link id, :class:`WriteOutcome`) of every planned write, failed or not
    outcomes: beam.PCollection
    #: a letter per failed write, about the entity whose change it carried
    dead_letters: beam.PCollection


class WriteChanges(beam.PTransform):
    """Applies the writes of the plans, batched per system; outputs (link id, WriteOutcome).

    Writes are keyed by the system they go to (one configured system is one company: a
    Business Central ``company_id``, a Business NXT ``company_no``) and a shard of the link id,
    then batched per key. A key's batches are written one after another (Beam processes a key
    of a stateful ``GroupIntoBatches`` in one place at a time, and the write is fused behind
    it), each through one connector and its ``requests_per_second`` limiter. So however many
    workers run, one pair sends a system at most ``write_shards`` (a system setting, default
    :data:`DEFAULT_WRITE_SHARDS`) concurrent write requests, at most
    ``write_shards × requests_per_second`` per second (docs/dataflow.md).

    Failed writes produce a failed outcome and a dead letter with the system's status and
    message; the rest of the batch goes on. Returns a :class:`WriteChangesResult`.
    """

    def __init__(self, ctx: PairContext, reference_inputs=None):
        super().__init__()
        self._ctx = ctx
        self._reference_inputs = reference_inputs or {}
        self._shards = {side: write_shards(ctx.system(side)) for side in (SOURCE, TARGET)}

    def expand(self, plans):
        shards = self._shards
        written = (plans
                   | "KeyBySystemShard" >> beam.FlatMap(
                       lambda plan: [((w.side, _shard(plan.link.link_id, shards[w.side])),
                                      (plan.link, w)) for w in plan.writes]
                   ).with_output_types(tuple[tuple[str, int], Any])
                   | "Batch" >> beam.GroupIntoBatches(_BATCH_SIZE)
                   | "Write" >> beam.ParDo(_WriteBatchFn(self._ctx),
                                           **self._reference_inputs).with_outputs(
                       _DEAD_LETTERS, main="outcomes"))
        return WriteChangesResult(outcomes=written.outcomes,
                                  dead_letters=written[_DEAD_LETTERS])


def write_shards(system: SystemConfig) -> int:
    """The ``write_shards`` setting of a system: its concurrent writers per pair."""
    value = system.settings.get("write_shards", DEFAULT_WRITE_SHARDS)
    try:
        shards = int(value)
    except (TypeError, ValueError):
        shards = 0
    if shards < 1 or str(shards) != str(value).strip():
        raise ValueError(f"systems.{system.name}.write_shards: expected a whole number "
                         f"of at least 1, not {value!r}")
    return shards


def _shard(link_id: str, shards: int) -> int:
    """A stable shard of a link (the same on every worker and every retry)."""
    return zlib.crc32(link_id.encode("utf-8")) % shards


class _WriteBatchFn(beam.DoFn):
    def __init__(self, ctx: PairContext):
        self._ctx = ctx

    def setup(self):
        self._mapper = PairMapper(self._ctx.pair)
        self._store = open_link_store(self._ctx.link_store)
        self._connectors = {}
        self._requests = {}
        self._fields = {side: system_fields(self._ctx.pair, side) for side in (SOURCE, TARGET)}

    def _connector(self, side: str):
        if side not in self._connectors:
            connector = connector_for(self._ctx.system(side))
            self._connectors[side] = connector
            self._requests[side] = RequestCounting(connector)
        return self._connectors[side]

    def process(self, element, **side_inputs):
        (side, _), batch = element
        resolve = Resolver(self._ctx.dataflow, self._store,
                           this_run_links(self._ctx.pair, side_inputs),
                           ExistenceCheck(self._ctx, self._connector))
        connector = self._connector(side)
        entity = self._ctx.entity(side)
        ops, pending = [], {}
        for link, write in batch:
            try:
                fields = (self._mapper.fields_for(side, write.changes, resolve)
                          if write.kind != "delete" else {})
            except MappingError as exc:
                yield from self._failed(link, write, error_class=exc.error_class,
                                        message=str(exc), payload=write.changes,
                                        stage=reference_stage(exc, "write"))
                continue
            ops.append(WriteOp(kind=write.kind, entity=entity, fields=fields, ref=link.link_id,
                               id=write.entity_id, if_match=write.etag,
                               idempotency_key=write.idempotency_key))
            pending[link.link_id] = (link, write, fields)
        if not ops:
            return
        origins = []
        try:
            results = connector.write(ops)
            failed = sum(1 for result in results if not result.ok)
            progress.info("%s: wrote %d changes to %s%s", self._ctx.pair.name, len(ops),
                          connector.name, f" ({failed} failed)" if failed else "")
            for result in results:
                link, write, fields = pending[result.ref]
                if not result.ok:
                    yield from self._failed_call(link, write, result.error, fields)
                    continue
                if write.kind == "delete":      # gone, or deactivated: no values to keep
                    self._ctx.counter(f"written_{side}").inc()
                    yield (link.link_id, WriteOutcome(
                        link_id=link.link_id, side=side, ok=True, entity_id=write.entity_id,
                        etag=result.record.etag if result.record is not None else None))
                    continue
                record = result.record
                if result.adopted:
                    record = yield from self._reconcile_adopted(connector, link, write, record,
                                                                resolve)
                    if record is None:
                        continue
                self._ctx.counter(f"written_{side}").inc()
                origins += self._origins_of(side, write, record)
                yield (link.link_id, WriteOutcome(
                    link_id=link.link_id, side=side, ok=True, entity_id=record.id,
                    etag=record.etag, view=self._view(side, record, write, resolve)))
            self._save_origins(origins)
        finally:
            for counting in self._requests.values():    # the other side's: existence checks
                counting.flush()

    def _origins_of(self, side: str, write: Write, record: Record) -> list[OriginWrite]:
        """What this write leaves in the record: the edit each value came from, the version
        the system answered with, the version it replaced. Nothing when the answer has no
        version (an entry that no read could ever match)."""
        version = Version(etag=record.etag, modified=record.modified)
        if not version.etag and version.modified is None:
            return []
        fields = self._fields[side]
        origins = {fields[p.property]: p.edit for p in write.provenance
                   if p.edit is not None and p.property in fields}
        return [OriginWrite(RecordOrigins(system=self._ctx.system(side).name,
                                          entity=self._ctx.entity(side), id=record.id,
                                          version=version, origins=origins),
                            replaced=write.replaces)]

    def _save_origins(self, origins: list[OriginWrite]) -> None:
        """One store round trip per batch. A failure costs only the edit times of this
        batch's values (their records' own times count, as before): it never fails the
        writes that were made."""
        if not origins:
            return
        try:
            self._store.save_origins(origins)
        except Exception as exc:  # noqa: BLE001 (the writes stand; only the origins are lost)
            _LOG.warning("%s: the origins of %d written values were not saved (%s: %s); "
                         "their records' modified times count on the next read",
                         self._ctx.pair.name, len(origins), type(exc).__name__, exc)

    def _reconcile_adopted(self, connector, link: Link, write: Write, record: Record, resolve):
        """An adopted entity may hold other values than ours: send the difference as an update."""
        side = write.side
        current = self._view(side, record, write, resolve)
        diff = {k: v for k, v in write.changes.items() if current.get(k) != v
                and not self._ctx.pair.property(k).immutable}
        if not diff:
            return record
        fields = self._mapper.fields_for(side, diff, resolve)
        [result] = connector.write([WriteOp(kind="update", entity=record.entity, fields=fields,
                                            ref=link.link_id, id=record.id, if_match=record.etag)])
        if not result.ok:
            yield from self._failed_call(link, write, result.error, fields)
            return None
        return result.record

    def _view(self, side: str, record: Record, write: Write, resolve) -> Mapping[str, Any]:
        try:
            return self._mapper.view(side, record.fields, resolve)
        except MappingError:
            # The system answered with something we cannot read back; fall back to what we
            # sent, so the next run compares against the values we meant to write.
            return dict(write.changes)

    def _failed_call(self, link: Link, write: Write, error, fields):
        yield from self._failed(link, write, error_class=error.error_class, message=str(error),
                                status=error.status, payload=fields)

    def _failed(self, link: Link, write: Write, *, error_class: str, message: str,
                status=None, payload=None, stage: str = "write"):
        """A failed write: a dead letter about the entity whose change it carried (so the next
        run reads that entity again and retries), and a failed outcome (so the link is not
        committed and the change is not forgotten)."""
        origin = other(write.side)
        written = self._ctx.system(write.side).name
        yield beam.pvalue.TaggedOutput(_DEAD_LETTERS, self._ctx.dead_letter(
            side=origin, entity_id=link.source_id if origin == SOURCE else link.target_id,
            stage=stage, error_class=error_class, direction=f"to_{write.side}",
            message=f"{write.kind} in {written} failed: {message}", status=status,
            payload=payload))
        yield (link.link_id, WriteOutcome(link_id=link.link_id, side=write.side, ok=False))

    def teardown(self):
        for connector in self._connectors.values():
            connector.close()
        self._store.close()


class CommitLinksResult(NamedTuple):
    """What :class:`CommitLinks` outputs."""

    #: the links committed, as the store holds them now
    links: beam.PCollection
    #: a ``conflict`` letter per link another writer changed meanwhile
    dead_letters: beam.PCollection
    #: the conflicts of the committed plans (rows of conflicts.jsonl)
    conflicts: beam.PCollection
    #: the audit events of what was committed (:mod:`transforms.audit`)
    audit: beam.PCollection
    #: per bundle, the number of links it committed: complete once every commit is done (a
    #: barrier a few elements long, where the links would be a side input of thousands)
    committed: beam.PCollection


class CommitLinks(beam.PTransform):
    """Commits the links whose writes all succeeded (a :class:`CommitLinksResult`).

    Also counts each plan's outcome for the report and emits its conflicts and its audit
    events (only for links the store committed, so never for a write that did not happen).
    Links that another writer changed meanwhile are not overwritten: they become ``conflict``
    dead letters and are planned again next run.
    """

    def __init__(self, ctx: PairContext):
        super().__init__()
        self._ctx = ctx

    def expand(self, inputs):
        plans, outcomes = inputs
        keyed_plans = plans | "KeyPlans" >> beam.Map(lambda plan: (plan.link.link_id, plan))
        # a plan and the outcomes of its writes, grouped by link id (told apart by type: a
        # CoGroupByKey would tag and untag each with three more transforms)
        committed = ((keyed_plans, outcomes)
                     | "Plans and outcomes" >> beam.Flatten()
                     | "Join" >> beam.GroupByKey()
                     | "Commit" >> beam.ParDo(_CommitLinksFn(self._ctx)).with_outputs(
                         _DEAD_LETTERS, _CONFLICTS, _AUDIT, _COMMITTED, main="links"))
        return CommitLinksResult(links=committed.links, dead_letters=committed[_DEAD_LETTERS],
                                 conflicts=committed[_CONFLICTS], audit=committed[_AUDIT],
                                 committed=committed[_COMMITTED])


class _CommitLinksFn(BufferedStoreFn):
    """Commits in batches: one link-store round trip per :data:`_COMMIT_BATCH` links (more
    when one element's plans cross it)."""

    batch_size = _COMMIT_BATCH

    def setup(self):
        super().setup()
        self._committed = 0

    def start_bundle(self):
        super().start_bundle()
        self._committed = 0

    def finish_bundle(self):
        yield from super().finish_bundle()
        yield from in_global_window([beam.pvalue.TaggedOutput(_COMMITTED, self._committed)])

    def process(self, element):
        _, joined = element
        ready: list[tuple[SyncPlan, Link]] = []
        outcomes = {o.side: o for o in joined if isinstance(o, WriteOutcome)}
        for plan in (item for item in joined if isinstance(item, SyncPlan)):
            if any(not outcomes.get(w.side) or not outcomes[w.side].ok for w in plan.writes):
                count_entities(self._ctx, plan, DEAD)
                continue  # a write failed (dead-lettered): keep the old link, retry next run
            ready.append((plan, _committed_link(plan, outcomes)))
        yield from self.buffer(*ready)

    def flush_batch(self, batch: list[tuple[SyncPlan, Link]]):
        stale: set[str] = set()
        try:
            committed = self._store.commit([link for _, link in batch])
        except StaleLinkError as exc:
            stale, committed = set(exc.link_ids), exc.committed
        by_id = {link.link_id: link for link in committed}
        progress.info("%s: committed %d links", self._ctx.pair.name, len(by_id))
        now = datetime.datetime.now(datetime.UTC)
        for plan, link in batch:
            if link.link_id in stale or link.link_id not in by_id:
                count_entities(self._ctx, plan, DEAD)
                side = SOURCE if link.source_id else TARGET
                yield beam.pvalue.TaggedOutput(_DEAD_LETTERS, self._ctx.dead_letter(
                    side=side, entity_id=link.source_id or link.target_id, stage="commit",
                    error_class="conflict", direction="link",
                    message=f"link {link.link_id} was changed by another run; planned again "
                            "on the next run"))
                continue
            self._count(plan)
            for conflict in plan.conflicts:
                yield beam.pvalue.TaggedOutput(_CONFLICTS, {
                    "run_id": self._ctx.run_id, "dataflow": self._ctx.dataflow,
                    "pair": self._ctx.pair.name, "source_id": link.source_id,
                    "target_id": link.target_id, "property": conflict.property,
                    "source_value": conflict.source_value,
                    "target_value": conflict.target_value, "winner": conflict.winner,
                    "rule": conflict.rule,
                    "source_modified": _iso(conflict.source_modified),
                    "target_modified": _iso(conflict.target_modified),
                    "source_edited_in": conflict.source_edited_in,
                    "target_edited_in": conflict.target_edited_in})
            for event in audit.committed_events(self._ctx, plan, by_id[link.link_id], now):
                yield beam.pvalue.TaggedOutput(_AUDIT, event)
            self._committed += 1
            yield by_id[link.link_id]

    def _count(self, plan: SyncPlan) -> None:
        count_plan(self._ctx, plan)


def _committed_link(plan: SyncPlan, outcomes: Mapping[str, WriteOutcome]) -> Link:
    """The link to store once every write of ``plan`` succeeded: a create or update leaves
    the written side's id, version and values as the system answered; a delete leaves the
    link as planned (a tombstone), with the version of a record deactivated rather than
    removed (so the next run knows that version for our own write: core/deletes.py)."""
    link = plan.link.replace(state=committed_state(plan.link.state))
    for side, outcome in outcomes.items():
        write = plan.write_for(side)
        if write is None:
            continue
        if write.kind == "delete":
            if outcome.etag is not None:
                link = link.replace(**{f"{side}_etag": outcome.etag})
            continue
        if side == TARGET:
            link = link.replace(target_id=outcome.entity_id, target_etag=outcome.etag,
                                snapshot_target=dict(outcome.view or {}))
        else:
            link = link.replace(source_id=outcome.entity_id, source_etag=outcome.etag,
                                snapshot_source=dict(outcome.view or {}))
    return link


def count_plan(ctx: PairContext, plan: SyncPlan) -> None:
    """Adds one plan carried out (or, with --plan, to be carried out) to the report: its
    entities read under its outcome, its updates and deletes per written side, an unlink and
    its conflicts."""
    count_entities(ctx, plan, plan.outcome)
    for write in plan.writes:
        if write.kind == "update":
            ctx.counter(f"updated_{write.side}").inc()
        elif write.kind == "delete":
            ctx.counter(f"deleted_in_{write.side}").inc()
    if plan.link.state == UNLINKED:
        ctx.counter(UNLINKED).inc()
    if plan.conflicts:
        ctx.counter("conflicts").inc(len(plan.conflicts))


def _iso(moment: datetime.datetime | None) -> str | None:
    """An edit time as conflicts.jsonl holds it (ISO 8601, None when unknown): when a person
    edited the value (its origin's time for a value talksync copied in, decisions/0015)."""
    return moment.isoformat() if moment else None


def count_entities(ctx: PairContext, plan: SyncPlan, outcome: str) -> None:
    """Counts the entities read that ``plan`` carries under ``outcome``: the plan's own, or
    the fate that stopped it (dead, held back)."""
    if plan.records_read:
        ctx.counter(outcome).inc(plan.records_read)
