"""Reading one side of a pair: the changed entities, the ones to retry, their canonical views."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import NamedTuple

import apache_beam as beam

from connectors import connector_for
from connectors.errors import ApiError, UnreachableError
from connectors.stores import open_link_store
from core.mapping import MappingError, PairMapper
from core.model import Record, UnreadableRecord
from core.planner import DEAD, Entity
from transforms.common import (
    ExistenceCheck,
    PairContext,
    RequestCounting,
    Resolver,
    progress,
    reference_stage,
    this_run_links,
    unreachable_counter,
)

_DEAD_LETTERS = "dead_letters"
_WATERMARKS = "watermarks"
_READ_FAILED = "read_failed"
_IDS_PER_TASK = 100


class ReadChangesResult(NamedTuple):
    """What :class:`ReadChanges` outputs."""

    #: each entity read, once (an entity both in the changed read and among the retry ids is
    #: read twice but passed on, counted and dead-lettered once: its freshest version)
    records: beam.PCollection
    #: (pair, system, the largest modified time of the changed read in ISO 8601): the next
    #: watermark
    watermarks: beam.PCollection
    #: the read-stage letters, as the two PCollections they come from: one letter per failed
    #: read, one per row that is not a record (flattened once, with the run's others: each
    #: Flatten of a Flatten costs Beam's local runner a stage)
    dead_letters: tuple[beam.PCollection, beam.PCollection]
    #: the pair's name when this side's read failed (0 or 1 element): the pair is not planned
    read_failed: beam.PCollection


class ReadChanges(beam.PTransform):
    """Reads the entities of one side of a pair changed since ``since``, plus ``retry_ids``.

    ``since`` (ISO 8601, None for a full read) is where the previous run left off, less an
    overlap. ``retry_ids`` are entities to read again whatever their modified time: open dead
    letters and uncommitted creates. Returns a :class:`ReadChangesResult`.

    A row that is not a record is a dead letter (the read goes on); a read that failed (an
    answer that stayed an error or malformed after the HTTP layer's retries) is a dead letter
    and puts the side in ``read_failed``. The pair must then not be planned: on half a
    picture it would wrongly create or overwrite.
    """

    def __init__(self, ctx: PairContext, side: str, since: str | None,
                 retry_ids: Sequence[str] = ()):
        super().__init__()
        self._ctx = ctx
        self._side = side
        self._since = since
        self._retry_ids = sorted(set(retry_ids))

    def expand(self, pbegin):
        tasks = [("changed", self._since)]
        tasks += [("ids", tuple(self._retry_ids[i:i + _IDS_PER_TASK]))
                  for i in range(0, len(self._retry_ids), _IDS_PER_TASK)]
        read = (pbegin
                | "Tasks" >> beam.Create(tasks)
                | "Read" >> beam.ParDo(_ReadRecordsFn(self._ctx, self._side)).with_outputs(
                    _WATERMARKS, _DEAD_LETTERS, _READ_FAILED, main="rows"))
        rows = read.rows
        if self._retry_ids:
            rows = rows | "Once per id" >> _OncePerId(self._retry_ids)
        counted = rows | "Count" >> beam.ParDo(
            _CountRowsFn(self._ctx, self._side)).with_outputs(_DEAD_LETTERS, main="records")
        return ReadChangesResult(
            records=counted.records, watermarks=read[_WATERMARKS],
            dead_letters=(read[_DEAD_LETTERS], counted[_DEAD_LETTERS]),
            read_failed=read[_READ_FAILED])


class _ReadRecordsFn(beam.DoFn):
    """Runs one read task; outputs the rows as read (records and unreadable rows alike)."""

    def __init__(self, ctx: PairContext, side: str):
        self._ctx = ctx
        self._side = side

    def setup(self):
        self._connector = connector_for(self._ctx.system(self._side))
        self._requests = RequestCounting(self._connector)

    def process(self, task):
        kind, arg = task
        entity = self._ctx.entity(self._side)
        try:
            if kind == "changed":
                since = (datetime.datetime.fromisoformat(arg) if arg else None)
                newest, count = None, 0
                for record in self._connector.read(entity, since):
                    if not isinstance(record, UnreadableRecord):
                        count += 1
                        if record.modified and (newest is None or record.modified > newest):
                            newest = record.modified
                    yield record
                if newest is not None:
                    yield beam.pvalue.TaggedOutput(_WATERMARKS, (
                        self._ctx.pair.name, self._ctx.system(self._side).name,
                        newest.isoformat()))
                progress.info("%s: read %d %s from %s (%s)", self._ctx.pair.name, count, entity,
                              self._connector.name, f"changed since {arg}" if arg else "all")
            else:
                records = self._connector.get(entity, arg)
                yield from records
                yield from self._gone(entity, arg, records)
                progress.info("%s: read again %d of %d %s to retry from %s",
                              self._ctx.pair.name, len(records), len(arg), entity,
                              self._connector.name)
        except ApiError as exc:
            if isinstance(exc, UnreachableError):
                unreachable_counter(self._connector.name).inc()
            yield from self._failed(entity, str(exc), exc.error_class, exc.status)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            # A connector met data it cannot read (a row that is not an object, a missing
            # field): the same pair-level failure as a malformed page, never a crashed run.
            yield from self._failed(
                entity, f"{self._connector.name} sent data its connector cannot read: "
                        f"{type(exc).__name__}: {exc}", "validation", None)
        finally:
            self._requests.flush()

    def _gone(self, entity: str, ids, records):
        """A deleted record for each id a look-up by id did not find: the system says it is
        not there (a hard delete), which is how a retried record whose delete is still to be
        propagated, or the counterpart of one, is known gone (docs/deletes.md)."""
        found = {record.id for record in records}
        for entity_id in ids:
            if entity_id not in found:
                yield Record(system=self._connector.name, entity=entity, id=entity_id,
                             fields={}, deleted=True)

    def _failed(self, entity: str, reason: str, error_class: str, status):
        """A read that failed: one dead letter for the pair, and the pair in ``read_failed``
        (it is then not planned; the next run reads it again)."""
        progress.warning("%s: reading %s from %s failed; the pair is not planned this run: "
                         "%s", self._ctx.pair.name, entity, self._connector.name, reason)
        yield beam.pvalue.TaggedOutput(_DEAD_LETTERS, self._ctx.dead_letter(
            side=self._side, entity_id=None, stage="read", error_class=error_class,
            status=status, direction=_direction(self._side),
            message=f"reading {entity} failed, so pair {self._ctx.pair.name} was not "
                    f"planned this run (the next run reads it again): {reason}"))
        yield beam.pvalue.TaggedOutput(_READ_FAILED, self._ctx.pair.name)

    def teardown(self):
        self._connector.close()


class _OncePerId(beam.PTransform):
    """Keeps one row per id among ``ids``, the entities the changed read may return too.

    Only those can come twice (a connector yields each id at most once per read, and the
    retry ids are read once each), so only they are grouped; the rest pass straight on.
    """

    _AGAIN = "maybe_twice"

    def __init__(self, ids: Sequence[str]):
        super().__init__()
        self._ids = frozenset(ids)

    def expand(self, rows):
        ids, again = self._ids, self._AGAIN
        split = rows | "Split" >> beam.FlatMap(
            lambda row: [beam.pvalue.TaggedOutput(again, (row.id, row))]
            if row.id in ids else [row]).with_outputs(again, main="once")
        kept = (split[again]
                | "Group by id" >> beam.GroupByKey()
                | "Freshest" >> beam.MapTuple(lambda _, versions: freshest(versions)))
        return (split.once, kept) | "Rows" >> beam.Flatten()


def freshest(versions):
    """The version of one entity to sync: a readable one before an unreadable one, then the
    latest modified (versions without a modified time last)."""
    def rank(row):
        readable = not isinstance(row, UnreadableRecord)
        modified = getattr(row, "modified", None)
        return (readable, modified is not None,
                modified or datetime.datetime.min.replace(tzinfo=datetime.UTC))
    return max(versions, key=rank)


class _CountRowsFn(beam.DoFn):
    """Counts each row read (once per entity) in ``read_<side>``; a row that is not a record
    becomes a read-stage dead letter, its entity counted ``dead``."""

    def __init__(self, ctx: PairContext, side: str):
        self._ctx = ctx
        self._side = side

    def setup(self):
        self._read = self._ctx.counter(f"read_{self._side}")
        self._dead = self._ctx.counter(DEAD)
        self._invalid = self._ctx.counter("invalid")

    def process(self, row):
        self._read.inc()
        if isinstance(row, UnreadableRecord):
            self._invalid.inc()
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(_DEAD_LETTERS, self._ctx.dead_letter(
                side=self._side, entity_id=row.id, stage="read", error_class="validation",
                message=row.reason, payload=row.payload, direction=_direction(self._side)))
            return
        yield row


class MapToViewsResult(NamedTuple):
    """What :class:`MapToViews` outputs."""

    #: the :class:`~core.planner.Entity` views of the records mapped
    entities: beam.PCollection
    #: one letter per record that could not be mapped, naming every problem
    dead_letters: beam.PCollection


class MapToViews(beam.PTransform):
    """Maps records of one side to :class:`~core.planner.Entity` views (a
    :class:`MapToViewsResult`).

    Records that cannot be mapped (invalid values, references not linked yet) are dead
    letters with every problem named; the rest of the run goes on.
    ``reference_inputs`` are the side inputs of :func:`transforms.common.reference_side_inputs`.
    """

    def __init__(self, ctx: PairContext, side: str, reference_inputs=None):
        super().__init__()
        self._ctx = ctx
        self._side = side
        self._reference_inputs = reference_inputs or {}

    def expand(self, records):
        inputs = self._reference_inputs if self._side == "source" else {}
        mapped = records | "Map" >> beam.ParDo(
            _MapRecordFn(self._ctx, self._side), **inputs).with_outputs(
                _DEAD_LETTERS, main="entities")
        return MapToViewsResult(entities=mapped.entities, dead_letters=mapped[_DEAD_LETTERS])


class _MapRecordFn(beam.DoFn):
    def __init__(self, ctx: PairContext, side: str):
        self._ctx = ctx
        self._side = side

    def setup(self):
        self._mapper = PairMapper(self._ctx.pair)
        needs_store = self._side == "source" and self._ctx.pair.depends_on
        self._store = open_link_store(self._ctx.link_store) if needs_store else None
        # an unlinked reference is looked up in the source system: missing, or not linked yet
        self._connector = connector_for(self._ctx.system(self._side)) if needs_store else None
        self._requests = RequestCounting(self._connector) if needs_store else None
        self._existence = (ExistenceCheck(self._ctx, lambda side: self._connector)
                           if needs_store else None)
        self._resolver = None
        self._resolver_inputs = None
        self._invalid = self._ctx.counter("invalid")
        self._dead = self._ctx.counter(DEAD)

    def process(self, record, **side_inputs):
        system = self._ctx.system(self._side).name
        if record.deleted:
            yield Entity(self._side, record.id, {}, record.modified, True, record.etag,
                         system=system)
            return
        try:
            view = self._mapper.view(self._side, record.fields, self._resolve(side_inputs))
        except MappingError as exc:
            if self._requests is not None:
                self._requests.flush()
            self._invalid.inc()
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(_DEAD_LETTERS, self._ctx.dead_letter(
                side=self._side, entity_id=record.id, stage=reference_stage(exc, "map"),
                error_class=exc.error_class, message=str(exc), payload=dict(record.fields),
                direction=_direction(self._side)))
            return
        yield Entity(self._side, record.id, view, record.modified, False, record.etag,
                     system=system)

    def _resolve(self, side_inputs) -> Resolver:
        key = tuple(id(v) for v in side_inputs.values())
        if self._resolver is None or key != self._resolver_inputs:
            self._resolver = Resolver(self._ctx.dataflow, self._store,
                                      this_run_links(self._ctx.pair, side_inputs),
                                      self._existence)
            self._resolver_inputs = key
        return self._resolver

    def teardown(self):
        if self._store is not None:
            self._store.close()
        if self._connector is not None:
            self._connector.close()


def _direction(side: str) -> str:
    """The direction an entity of ``side`` syncs in (named in its dead letters)."""
    return f"to_{'target' if side == 'source' else 'source'}"
