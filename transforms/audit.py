"""The audit trail: one event per write the engine performed, with where each value came from.

Events are made from what :class:`~transforms.write.CommitLinks` committed (a create, an update
or a delete of either side, a link by match key, a record found deleted, a link removed, a
conflict settled without a write) and from the run's dead
letters, so there is never an event for a write that did not happen. Each event names the run,
the time, the dataflow, pair, direction and system, the ids on both sides, the operation, and per
property the value before, the value after (as the written system answered it), the side it came
from with its value there, and the rule that chose it — the planner's
:class:`~core.planner.Provenance`, not a guess made afterwards.

:class:`WriteAuditLog` writes a run's events as Parquet, partitioned the Hive way by dataflow and
date (``<audit_dir>/dataflow=<D>/date=<YYYY-MM-DD>/<run_id>-<n>.parquet``) through Beam's
``FileSystems``, so a local folder and a ``gs://`` path work alike; :func:`read_events` reads
them back. Values are canonical values as JSON text (:func:`core.model.encode_value`):
business data only, never settings or credentials.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import apache_beam as beam
import pyarrow
from apache_beam.io.filesystems import FileSystems

from core.model import (
    DELETED_BOTH,
    DELETED_SOURCE,
    DELETED_TARGET,
    UNLINKED,
    DeadLetter,
    Link,
    decode_value,
    encode_value,
)
from core.planner import DELETED as DELETED_OUTCOME
from core.planner import LINK, SOURCE, TARGET, Provenance, SyncPlan, other
from transforms.common import PairContext
from transforms.finish import write_parquet

# operations
CREATE = "create"
UPDATE = "update"
LINK_BY_MATCH = "link"
CONFLICT = "conflict"            # a conflict settled without a write (the loser is read-only)
DELETE = "delete"                # a delete propagated to one side (delete policy propagate)
DELETED = "deleted"              # a record found deleted in its system (docs/deletes.md)
UNLINK = "unlink"                # a link removed after a delete (delete policy unlink)
DEAD_LETTER = "dead_letter"

_PROPERTY = pyarrow.struct([
    ("property", pyarrow.string()), ("before", pyarrow.string()), ("after", pyarrow.string()),
    ("from_side", pyarrow.string()), ("from_system", pyarrow.string()),
    ("from_value", pyarrow.string()), ("rule", pyarrow.string()),
    ("conflict", pyarrow.bool_())])
COLUMNS = [
    ("event_id", "string"), ("run_id", "string"),
    ("time", pyarrow.timestamp("us", tz="UTC")), ("dataflow", "string"), ("pair", "string"),
    ("operation", "string"), ("direction", "string"), ("system", "string"),
    ("entity", "string"), ("link_id", "string"), ("source_id", "string"),
    ("target_id", "string"), ("properties", pyarrow.list_(_PROPERTY)), ("stage", "string"),
    ("error_class", "string"), ("status", "int64"), ("message", "string"),
]
_ROWS_PER_FILE = 50_000


def value_text(value: Any) -> str | None:
    """A canonical value as the JSON text an event stores (None stays None)."""
    return None if value is None else json.dumps(encode_value(value), ensure_ascii=False,
                                                 sort_keys=True)


def value_of(text: str | None) -> Any:
    """The canonical value of an event's JSON text (the inverse of :func:`value_text`)."""
    return None if text is None else decode_value(json.loads(text))


# --- events from committed plans -----------------------------------------------------------

def committed_events(ctx: PairContext, plan: SyncPlan, link: Link,
                     time: datetime.datetime) -> list[dict]:
    """The events of one committed plan; ``link`` is the link as committed (its snapshots hold
    each written side's values as the system answered the write)."""
    events = []
    if plan.outcome == LINK:
        events.append(_event(ctx, plan, link, time, LINK_BY_MATCH, "link", "", "", []))
    events += _delete_events(ctx, plan, link, time)
    written = set()
    for write in plan.writes:
        snapshot = link.snapshot_target if write.side == TARGET else link.snapshot_source
        rows = [_property_row(ctx, p, snapshot.get(p.property, p.after))
                for p in write.provenance]
        written.update(p.property for p in write.provenance)
        if write.kind == CREATE:
            rows += _set_by_system(ctx, write.side, snapshot,
                                   {p.property for p in write.provenance})
        events.append(_event(ctx, plan, link, time, write.kind, f"to_{write.side}",
                             ctx.system(write.side).name, ctx.entity(write.side), rows))
    for conflict in plan.conflicts:
        if conflict.property in written:
            continue
        loser = other(conflict.winner)
        kept = conflict.target_value if loser == TARGET else conflict.source_value
        winning = conflict.source_value if loser == TARGET else conflict.target_value
        row = _property_row(ctx, Provenance(
            property=conflict.property, before=kept, after=winning, origin=conflict.winner,
            rule=f"{conflict.rule}; not written: read-only in "
                 f"{ctx.system(loser).name}", conflict=True), kept)
        events.append(_event(ctx, plan, link, time, CONFLICT, f"to_{loser}",
                             ctx.system(loser).name, ctx.entity(loser), [row]))
    return events


def _delete_events(ctx: PairContext, plan: SyncPlan, link: Link,
                   time: datetime.datetime) -> list[dict]:
    """A ``deleted`` event per record found deleted (the side its system deleted it in; both
    ids are in every event), and an ``unlink`` event when the link was removed."""
    if plan.outcome != DELETED_OUTCOME:
        return []
    written = {write.side for write in plan.writes if write.kind == DELETE}
    marked = {DELETED_SOURCE: (SOURCE,), DELETED_TARGET: (TARGET,),
              DELETED_BOTH: (SOURCE, TARGET)}.get(plan.link.state, ())
    events = [_event(ctx, plan, link, time, DELETED, f"in_{side}", ctx.system(side).name,
                     ctx.entity(side), []) for side in marked if side not in written]
    if plan.link.state == UNLINKED:
        events.append(_event(ctx, plan, link, time, UNLINK, "link", "", "", []))
    return events


def _set_by_system(ctx: PairContext, side: str, snapshot: Mapping[str, Any],
                   sent: set) -> list[dict]:
    """The values a create's answer holds that were not sent: defaults the system filled in."""
    system = ctx.system(side).name
    return [{"property": name, "before": None, "after": value_text(snapshot[name]),
             "from_side": side, "from_system": system, "from_value": value_text(snapshot[name]),
             "rule": f"set by {system}", "conflict": False}
            for name in sorted(snapshot)
            if name not in sent and snapshot[name] is not None
            and name in {p.target for p in ctx.pair.properties}]


def _property_row(ctx: PairContext, provenance: Provenance, after: Any) -> dict:
    return {"property": provenance.property, "before": value_text(provenance.before),
            "after": value_text(after), "from_side": provenance.origin,
            "from_system": ctx.system(provenance.origin).name,
            "from_value": value_text(provenance.after), "rule": provenance.rule,
            "conflict": provenance.conflict}


def _event(ctx: PairContext, plan: SyncPlan, link: Link, time: datetime.datetime,
           operation: str, direction: str, system: str, entity: str,
           properties: list[dict]) -> dict:
    return {"event_id": f"{ctx.run_id}/{ctx.pair.name}/{link.link_id}/{operation}/{direction}",
            "run_id": ctx.run_id, "time": time, "dataflow": ctx.dataflow, "pair": plan.pair,
            "operation": operation, "direction": direction, "system": system,
            "entity": entity, "link_id": link.link_id, "source_id": link.source_id,
            "target_id": link.target_id, "properties": properties, "stage": None,
            "error_class": None, "status": None, "message": None}


def dead_letter_event(letter: DeadLetter, source_system: str) -> dict:
    """The event of a dead letter: the entity it names, on its side, and why it failed."""
    side = SOURCE if letter.system == source_system else TARGET
    time = (datetime.datetime.fromisoformat(letter.created_at) if letter.created_at
            else datetime.datetime.now(datetime.UTC))
    return {"event_id": f"{letter.run_id}/{letter.pair}/{letter.system}:{letter.entity_id}/"
                        f"{DEAD_LETTER}/{letter.stage}/{letter.direction}",
            "run_id": letter.run_id, "time": time, "dataflow": letter.dataflow,
            "pair": letter.pair, "operation": DEAD_LETTER, "direction": letter.direction,
            "system": letter.system, "entity": letter.entity, "link_id": None,
            "source_id": letter.entity_id if side == SOURCE else None,
            "target_id": letter.entity_id if side == TARGET else None, "properties": [],
            "stage": letter.stage, "error_class": letter.error_class,
            "status": letter.status, "message": letter.message}


# --- writing and reading -------------------------------------------------------------------

class WriteAuditLog(beam.PTransform):
    """Writes a run's audit events and dead letters as Parquet, one folder per date.

    Input: ``(events, dead_letters)``. Outputs the paths written. A retried bundle writes the
    same file names again, so the log holds each event once.
    """

    def __init__(self, audit_dir: str, dataflow: str, run_id: str, source_system: str):
        super().__init__()
        self._audit_dir = audit_dir
        self._dataflow = dataflow
        self._run_id = run_id
        self._source_system = source_system

    def expand(self, inputs):
        events, dead_letters = inputs
        letters = dead_letters | "DeadLetterEvents" >> beam.Map(
            dead_letter_event, source_system=self._source_system)
        return ((events, letters)
                | "AllEvents" >> beam.Flatten()
                | "KeyByDate" >> beam.Map(lambda event: (
                    event["time"].astimezone(datetime.UTC).date().isoformat(), event))
                | "GroupByDate" >> beam.GroupByKey()
                | "WriteParquet" >> beam.ParDo(_WriteDateFn(
                    self._audit_dir, self._dataflow, self._run_id)))


class _WriteDateFn(beam.DoFn):
    def __init__(self, audit_dir: str, dataflow: str, run_id: str):
        self._audit_dir = audit_dir
        self._dataflow = dataflow
        self._run_id = run_id
        self._files = beam.metrics.Metrics.counter("talksync", "audit/files")

    def process(self, element):
        date, events = element
        events = sorted(events, key=lambda e: (e["time"], e["event_id"]))
        folder = FileSystems.join(self._audit_dir, f"dataflow={self._dataflow}", f"date={date}")
        for number, start in enumerate(range(0, len(events), _ROWS_PER_FILE)):
            path = FileSystems.join(folder, f"{self._run_id}-{number:04d}.parquet")
            write_parquet(path, events[start:start + _ROWS_PER_FILE], COLUMNS)
            self._files.inc()
            yield path


def read_events(audit_dir: str, dataflow: str | None = None,
                since: datetime.datetime | None = None,
                run_id: str | None = None) -> list[dict]:
    """The events under ``audit_dir`` (of one dataflow, from a moment on, of one run), oldest
    first.

    Only the date folders from ``since``'s date on are opened, and of one run only its files."""
    import pyarrow.parquet
    files = f"{run_id}-*.parquet" if run_id else "*.parquet"
    pattern = FileSystems.join(audit_dir, f"dataflow={dataflow or '*'}", "date=*", files)
    matched = FileSystems.match([pattern])[0].metadata_list
    first_day = since.astimezone(datetime.UTC).date().isoformat() if since else None
    events = []
    for path in sorted(m.path for m in matched):
        folder_date = _partition(path, "date")
        if first_day and folder_date and folder_date < first_day:
            continue
        with FileSystems.open(path) as handle:
            events += pyarrow.parquet.read_table(pyarrow.BufferReader(handle.read())).to_pylist()
    if since:
        events = [e for e in events if e["time"] >= since]
    return sorted(events, key=lambda e: (e["time"], e["event_id"]))


def _partition(path: str, name: str) -> str | None:
    for part in path.replace("\\", "/").split("/"):
        if part.startswith(name + "="):
            return part[len(name) + 1:]
    return None
