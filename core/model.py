"""The engine's data: what is read, written and remembered, as plain values.

Every other package speaks in these types: connectors turn a system's API into
:class:`Record` values and apply :class:`WriteOp` batches; the link stores keep :class:`Link`,
:class:`DeadLetter` and :class:`StateEntry` values; the planner (:mod:`core.planner`) reads links
and writes plans. Nothing here does I/O or imports Beam, so the planner and its tests need
neither a store nor a pipeline (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import json
from collections.abc import Mapping
from typing import Any, Protocol

# --- records and writes (a connector's side) --------------------------------------------


class CallError(Protocol):
    """What the engine needs to know of a failed call to a system: the HTTP status (None for
    network errors) and the dead letter's error class. :class:`connectors.errors.ApiError` is
    the one implementation; core names only this shape, so it imports no connector."""

    status: int | None

    @property
    def error_class(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class Record:
    """One entity as read from (or written to) a system.

    ``fields`` holds the entity in the system's own vocabulary and JSON-like values (money may
    be ``decimal.Decimal`` when the wire format is a JSON number, to avoid float rounding).
    ``modified`` is timezone-aware UTC. ``etag`` is the system's version token, if it has one.
    """

    system: str
    entity: str
    id: str
    fields: Mapping[str, Any]
    modified: datetime.datetime | None = None
    deleted: bool = False
    etag: str | None = None


@dataclasses.dataclass(frozen=True)
class UnreadableRecord:
    """A row a system returned in a read that is not a record: not an object, without an id,
    with a modified time or deleted flag that cannot be read. A connector's ``read`` yields it
    in place of the :class:`Record` and reads on; the engine makes it a dead letter of the read
    stage, so one bad row never stops the others. ``id`` is the row's id when it has a usable
    one (the next run reads it again by that id); ``reason`` says what is wrong."""

    system: str
    entity: str
    id: str | None
    reason: str
    payload: Any = None


@dataclasses.dataclass(frozen=True)
class WriteOp:
    """One create or update to apply to a system.

    ``kind`` is ``"create"``, ``"update"`` or ``"delete"``. A delete removes the entity ``id``
    the way its system does it (a hard delete, a soft delete, or a deactivation such as
    Business Central's ``blocked``); its result's ``record`` is the entity as it now stands
    (deactivated, ``deleted`` set) or None when it is gone, and an entity already gone is a
    success. For updates ``id`` names the entity and
    ``fields`` holds only the changed properties (nested objects are merge-patched; lists
    are replaced whole). Values are JSON-like, except that money and quantities arrive as
    ``decimal.Decimal``: each connector writes them in its system's own form (a decimal
    string, a JSON number) without going through float. ``if_match`` is the ETag the change was
    planned against.
    ``idempotency_key`` is stable across retries of the same create, so a repeated create
    returns the first result instead of a duplicate. ``ref`` is the caller's correlation id,
    echoed in the :class:`WriteResult`.
    """

    kind: str
    entity: str
    fields: Mapping[str, Any]
    ref: str
    id: str | None = None
    if_match: str | None = None
    idempotency_key: str | None = None


@dataclasses.dataclass(frozen=True)
class WriteResult:
    """The outcome of one :class:`WriteOp`: the entity as the system now has it, or an error."""

    ref: str
    record: Record | None = None
    error: CallError | None = None
    #: True when a create found the entity already there (an idempotent replay, or a
    #: duplicate-key answer followed by a read of that key): ``record`` is the existing entity,
    #: whose values may differ from the ones sent.
    adopted: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    """How to reach one system: its base URL and settings (secrets as ``${ENV}`` references).

    ``state_store`` is the run's link store URL, where a connector keeps what must outlive a
    run and be shared by workers (e.g. rotating OAuth refresh tokens, as state entries).
    """

    name: str
    type: str
    base_url: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    state_store: str | None = None



# --- links, dead letters and state (the link store's side) -----------------------------

PENDING = "pending"
LINKED = "linked"
# Tombstones (docs/deletes.md): a link whose record(s) were deleted, kept so later runs know.
DELETED_SOURCE = "deleted_source"     # the source record is deleted, the target kept
DELETED_TARGET = "deleted_target"     # the target record is deleted, the source kept
DELETED_BOTH = "deleted"              # both records are deleted (a propagated delete)
TOMBSTONES = (DELETED_SOURCE, DELETED_TARGET, DELETED_BOTH)
#: the state of a link to forget: committing it removes the link (delete policy ``unlink``)
UNLINKED = "unlinked"
#: every state a stored link can have
LINK_STATES = (PENDING, LINKED, *TOMBSTONES)


def committed_state(state: str) -> str:
    """The state a link committed in ``state`` is stored in: a create or a first link
    (``pending``) becomes ``linked``; a tombstone stays one; ``unlinked`` is removed."""
    return LINKED if state == PENDING else state


@dataclasses.dataclass(frozen=True)
class Link:
    """One source entity tied to one target entity of a pair.

    ``link_id`` is stable from the moment the link is reserved: ``"s:<source id>"`` when the
    source entity came first (a create in the target), ``"t:<target id>"`` when the target came
    first. ``state`` is ``pending`` between the reservation and the commit of a create, then
    ``linked``; once a record of the link is deleted, a tombstone (:data:`TOMBSTONES`, see
    docs/deletes.md). ``version`` is the store's optimistic-concurrency counter (0 = not stored
    yet). Snapshots map canonical property names to canonical values (see :func:`encode_values`).
    """

    pair: str
    link_id: str
    source_id: str | None = None
    target_id: str | None = None
    state: str = LINKED
    snapshot_source: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    snapshot_target: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source_etag: str | None = None
    target_etag: str | None = None
    attempt_id: str | None = None
    version: int = 0
    updated_at: str | None = None

    def replace(self, **changes: Any) -> Link:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """An entity that could not be synced this run, with why; retried on the next run.

    ``system``/``entity``/``entity_id`` name the entity the next run reads again: the record
    that failed to map, or — for a failed write — the record whose change the write carried
    (``direction`` says which way; the message names the system that refused it).
    ``attempts`` counts the runs in a row that left the entity a dead letter (1: this run's
    first). A letter of the stage ``reference`` (a reference to an entity that exists in
    neither system) is retried that many runs at most, then kept as ``permanent``: carried
    from run to run without reading the record again, until the record changes.
    """

    run_id: str
    dataflow: str
    pair: str
    direction: str          # "to_target" | "to_source" | "read"
    system: str
    entity: str
    entity_id: str | None
    stage: str              # "read" | "map" | "plan" | "reference" | "write" | "commit"
    error_class: str        # "validation" | "permanent" | "transient" | "conflict" | "reference"
    message: str
    status: int | None = None
    payload: str | None = None      # JSON text of the offending record (secrets masked)
    created_at: str | None = None
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StateEntry:
    """A small versioned document kept beside the links: a run lock, a connector's tokens.

    ``version`` is 1 when the entry is created and grows by one with every write, so writers
    can compare-and-set (:meth:`connectors.linkstore.LinkStore.write_state`).
    """

    key: str
    value: dict[str, Any]
    version: int


# --- canonical values <-> JSON -------------------------------------------------------------
# Snapshots hold canonical Python values (str, int, bool, Decimal, date, datetime, lists and
# dicts of those). Stores keep them as JSON; these tags make the round trip exact.

def encode_value(value: Any) -> Any:
    """A JSON-safe form of a canonical value that :func:`decode_value` turns back exactly."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, float):
        return {"$decimal": repr(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, Mapping):
        return {"$map": {str(k): encode_value(v) for k, v in value.items()}}
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if isinstance(value, list):
        return tuple(decode_value(v) for v in value)
    if isinstance(value, dict):
        if "$decimal" in value:
            return decimal.Decimal(value["$decimal"])
        if "$datetime" in value:
            return datetime.datetime.fromisoformat(value["$datetime"])
        if "$date" in value:
            return datetime.date.fromisoformat(value["$date"])
        if "$bytes" in value:
            return base64.b64decode(value["$bytes"])
        if "$map" in value:
            return {k: decode_value(v) for k, v in value["$map"].items()}
        raise ValueError(f"unknown tagged value {sorted(value)}")
    return value


def encode_values(values: Mapping[str, Any]) -> str:
    """A snapshot as JSON text."""
    return json.dumps({k: encode_value(v) for k, v in values.items()}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))


def decode_values(text: str | None) -> dict[str, Any]:
    """A snapshot from JSON text (empty for None)."""
    if not text:
        return {}
    values: dict[str, Any] = json.loads(text)
    if "{" not in text[1:] and "[" not in text:
        return values       # no nested object or list, so no tagged value: nothing to decode
    return {k: decode_value(v) for k, v in values.items()}
