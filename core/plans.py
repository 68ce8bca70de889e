"""The planner's vocabulary: the entities it reads, the plans and rejections it makes, and the
outcomes the report counts them under (:mod:`core.planner` plans; :mod:`core.deletes` decides
about deleted records). Plain frozen values, no logic but the small accessors."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from core.model import Link
from core.provenance import EditOrigin, Version

SOURCE = "source"
TARGET = "target"

# Plan outcomes. Also the report's counters of entities read: each entity read this run is
# counted once, under the outcome of the plan of its link, or under one of the outcomes below.
CREATE_TARGET = "created_in_target"
CREATE_SOURCE = "created_in_source"
LINK = "linked_by_match"
UPDATE = "updated"
UNCHANGED = "unchanged"
# What becomes of an entity read that no plan carries (or whose plan was not carried out).
DELETED = "deleted"       # deleted in its system, or its counterpart was (docs/deletes.md)
SKIPPED = "skipped"       # nothing to do by design (no create in that direction, say)
DEAD = "dead"             # its sync failed this run: a dead letter says why
HELD = "held_back"        # not planned or not written: circuit breaker, or a failed read

def other(side: str) -> str:
    return TARGET if side == SOURCE else SOURCE


@dataclasses.dataclass(frozen=True)
class Entity:
    """A record of one side of a pair, mapped to the pair's canonical view.

    ``system`` names the system the record is in. ``origins`` holds, per canonical property,
    the person's edit a value talksync wrote into the record came from, and
    ``others_edited`` when the record's other values were last edited, both only while the
    record is as talksync's last write left it (core/provenance.py): "latest change wins"
    then compares people's edit times, not the time talksync copied a value in.
    """

    side: str
    id: str
    view: Mapping[str, Any]
    modified: datetime.datetime | None = None
    deleted: bool = False
    etag: str | None = None
    system: str = ""
    origins: Mapping[str, EditOrigin] = dataclasses.field(default_factory=dict)
    others_edited: datetime.datetime | None = None

    @property
    def version(self) -> Version:
        """The version read: what tells whether the record changed after a write."""
        return Version(etag=self.etag, modified=self.modified)

    def edited_at(self, name: str) -> datetime.datetime | None:
        """When a person last edited property ``name``: its origin's time for a value talksync
        wrote, else the record's own time (``others_edited``, else its modified time)."""
        origin = self.origins.get(name)
        if origin is not None:
            return origin.at
        return self.others_edited or self.modified

    def edit_origin(self, name: str) -> EditOrigin | None:
        """The edit property ``name``'s value comes from (None: not known)."""
        origin = self.origins.get(name)
        if origin is not None:
            return origin
        at = self.others_edited or self.modified
        return EditOrigin(self.system, at) if at is not None and self.system else None


@dataclasses.dataclass(frozen=True)
class Conflict:
    """Both sides changed one property differently; ``winner`` is the side whose value won.
    The edit times compared are kept so a reader can see why the latest change won:
    ``*_modified`` is when a person edited each side's value (the origin's time for a value
    talksync copied in, else the record's modified time), ``*_edited_in`` the system where."""

    property: str
    source_value: Any
    target_value: Any
    winner: str
    rule: str
    source_modified: datetime.datetime | None = None
    target_modified: datetime.datetime | None = None
    source_edited_in: str | None = None
    target_edited_in: str | None = None


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where one written value came from: the value it replaces on the written side, the side
    that supplied it and the rule that chose it (``conflict`` when both sides had changed)."""

    property: str
    before: Any
    after: Any
    origin: str
    rule: str
    conflict: bool = False
    #: the person's edit the value comes from (kept with the written record: core/provenance.py)
    edit: EditOrigin | None = None


@dataclasses.dataclass(frozen=True)
class Write:
    """One create, update or delete of one side, in canonical values, with each value's
    provenance (a delete has no values: it removes ``entity_id`` its system's way)."""

    side: str
    kind: str                       # "create" | "update" | "delete"
    changes: Mapping[str, Any]
    entity_id: str | None = None
    etag: str | None = None
    idempotency_key: str | None = None
    provenance: tuple[Provenance, ...] = ()
    #: the version of the record an update replaces, as read (None: a create)
    replaces: Version | None = None


@dataclasses.dataclass(frozen=True)
class SyncPlan:
    """What one link needs this run.

    ``link`` is the link to commit once every write succeeded: ids known so far, snapshots as
    planned (the write stage replaces a written side's snapshot with the view of the system's
    response). ``commit`` is False when nothing about the link changed. ``records_read``
    is how many of the link's two entities were read this run and not deleted (set by
    :func:`account_group`): the report counts that many entities under this plan's fate.
    """

    pair: str
    outcome: str
    link: Link
    writes: tuple[Write, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    commit: bool = True
    records_read: int = 0

    def write_for(self, side: str) -> Write | None:
        for write in self.writes:
            if write.side == side:
                return write
        return None


@dataclasses.dataclass(frozen=True)
class Rejection:
    """An entity the planner refuses (for example a duplicate match key): a dead letter."""

    side: str
    entity_id: str
    message: str
    error_class: str = "validation"
