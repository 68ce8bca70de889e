"""Delete policies: what a linked pair needs when a record of it is deleted (docs/deletes.md).

A record is *gone* when it is read deleted this run (the webshop's soft-delete flag, Exact's
``sync/Deleted``, or a linked id that a full rescan did not return and a ``get`` then did not
find), or when its link is a tombstone that says so and it was not read again. Per pair,
``delete:`` says what a delete on one side does to the other:

* ``ignore`` (the default): nothing is written; the link becomes a tombstone
  (``deleted_source`` / ``deleted_target``), so later runs know the counterpart is gone.
* ``unlink``: the link is removed; both records stay, the survivor is an unlinked record from
  then on (the pair's ``create`` policy applies when it next changes).
* ``propagate``: the survivor is deleted its system's way (a ``delete`` write); once that
  succeeded the link is a tombstone of both sides.

Whatever the policy, a change to the survivor is never silent and never deleted: while its
counterpart is gone, a survivor that differs from its snapshot is a ``conflict`` rejection
naming both records and what to do. A gone record read alive again (a soft delete undone)
makes its link live again and sync resumes; only a tombstone of both sides stays one (its
records were deleted on purpose, so a restored one is a rejection too, never deleted again).

Pure: no I/O; :mod:`core.planner` calls :func:`gone_sides` and :func:`plan_gone`.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.model import (
    DELETED_BOTH,
    DELETED_SOURCE,
    DELETED_TARGET,
    UNLINKED,
    Link,
)
from core.plans import (
    DELETED,
    SOURCE,
    TARGET,
    Entity,
    Rejection,
    SyncPlan,
    Write,
    other,
)
from core.provenance import Version
from core.spec import PairSpec

#: the sides a tombstone state says are gone
_MARKED = {DELETED_SOURCE: frozenset({SOURCE}), DELETED_TARGET: frozenset({TARGET}),
           DELETED_BOTH: frozenset({SOURCE, TARGET})}
_TOMBSTONE_OF = {SOURCE: DELETED_SOURCE, TARGET: DELETED_TARGET}


def gone_sides(link: Link, source: Entity | None, target: Entity | None) -> frozenset[str]:
    """The sides of ``link`` whose record is gone: read deleted this run, or not read and
    gone by the link's tombstone. A record read alive is not gone (a restore)."""
    marked = _MARKED.get(link.state, frozenset())
    gone = set()
    for side, entity in ((SOURCE, source), (TARGET, target)):
        if entity is not None:
            if entity.deleted:
                gone.add(side)
        elif side in marked:
            gone.add(side)
    return frozenset(gone)


def plan_gone(pair: PairSpec, link: Link, source: Entity | None, target: Entity | None,
              gone: frozenset[str], systems: Mapping[str, str]
              ) -> tuple[SyncPlan, list[Rejection]]:
    """The plan of a link with at least one side ``gone``, and the survivor's rejection when
    it changed (``systems`` names each side's system in the message)."""
    if gone == {SOURCE, TARGET}:
        return _tombstone(pair, link, DELETED_BOTH), []
    [deleted] = gone
    survivor_side = other(deleted)
    survivor = source if survivor_side == SOURCE else target
    if survivor is not None and (restored(link, survivor) or changed(pair, link, survivor)):
        kept = link if link.state == DELETED_BOTH else link.replace(
            state=_TOMBSTONE_OF[deleted])
        rejection = Rejection(side=survivor_side, entity_id=survivor.id,
                              message=changed_survivor_message(pair, link, deleted, systems),
                              error_class="conflict")
        return SyncPlan(pair=pair.name, outcome=DELETED, link=kept,
                        commit=kept.state != link.state), [rejection]
    if link.state == DELETED_BOTH:      # our own deactivation read back: already done
        return _tombstone(pair, link, DELETED_BOTH), []
    if pair.delete == "unlink":
        return SyncPlan(pair=pair.name, outcome=DELETED,
                        link=link.replace(state=UNLINKED)), []
    if pair.delete == "propagate":
        return _propagate(pair, link, survivor_side, survivor), []
    return _tombstone(pair, link, _TOMBSTONE_OF[deleted]), []


def restored(link: Link, survivor: Entity) -> bool:
    """Whether ``survivor``, read alive while its link is a tombstone of both sides, was
    brought back by a person. A record our delete deactivated rather than removed (Business
    Central's ``blocked``) reads alive, at the version that delete left (kept on the link):
    that is our own write read back, not a restore."""
    if link.state != DELETED_BOTH:
        return False
    kept = link.source_etag if survivor.side == SOURCE else link.target_etag
    return survivor.etag is None or survivor.etag != kept


def changed(pair: PairSpec, link: Link, survivor: Entity) -> bool:
    """Whether ``survivor`` (read alive) differs from its side's snapshot in a property of
    the pair: an edit made after the last sync. Properties the snapshot lacks (new to the
    spec) do not count."""
    snapshot = link.snapshot_source if survivor.side == SOURCE else link.snapshot_target
    return any(prop.target in snapshot and survivor.view.get(prop.target) != snapshot[prop.target]
               for prop in pair.properties)


def changed_survivor_message(pair: PairSpec, link: Link, deleted: str,
                             systems: Mapping[str, str]) -> str:
    """The rejection of a survivor edited while its counterpart is deleted: both records by
    system and id, the policy, and the two ways out."""
    survivor = other(deleted)
    names = {side: f"{systems.get(side, side)} {_label(pair, side)} {_id(link, side)}"
             for side in (SOURCE, TARGET)}
    return (f"{names[survivor]} was changed, but the record it is linked to, "
            f"{names[deleted]}, was deleted: with delete policy {pair.delete!r} the change is "
            f"not synced and nothing is deleted. Restore {names[deleted]} to sync the "
            f"change, or delete {names[survivor]} too")


def _propagate(pair: PairSpec, link: Link, side: str, survivor: Entity | None) -> SyncPlan:
    """The delete of the survivor on ``side``, guarded by the version last read (its link's
    ETag when it was not read this run); committed as a tombstone of both sides."""
    link_etag = link.source_etag if side == SOURCE else link.target_etag
    etag = survivor.etag if survivor is not None and survivor.etag else link_etag
    replaces = survivor.version if survivor is not None else Version(etag=link_etag)
    entity_id = link.source_id if side == SOURCE else link.target_id
    write = Write(side, "delete", {}, entity_id=entity_id, etag=etag, replaces=replaces)
    return SyncPlan(pair=pair.name, outcome=DELETED, link=link.replace(state=DELETED_BOTH),
                    writes=(write,))


def _tombstone(pair: PairSpec, link: Link, state: str) -> SyncPlan:
    """The link kept as tombstone ``state``; stored only when its state changes."""
    return SyncPlan(pair=pair.name, outcome=DELETED, link=link.replace(state=state),
                    commit=link.state != state)


def _label(pair: PairSpec, side: str) -> str:
    return (pair.source if side == SOURCE else pair.target).label.lower()


def _id(link: Link, side: str) -> str | None:
    return link.source_id if side == SOURCE else link.target_id
